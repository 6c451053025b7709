-- A psql -f session: every statement the example answers, and one error.
INSERT INTO kv VALUES ('s1', 'one');
INSERT INTO kv VALUES ('s2', 'it''s two');
SELECT v FROM kv WHERE k = 's2';
SELECT 1; SELECT version();
INSERT INTO kv VALUES ('s1', 'again');
DELETE FROM kv WHERE k = 's1';
DELETE FROM kv WHERE k = 's2';
SELECT 'done';
