/*
 * loadclient - closed-loop, verifying load client for protogen's benchmarks.
 *
 * Single-threaded, non-blocking, epoll. Python clients saturate long before
 * the servers under test do, so the measuring side is native.
 *
 * Protocols (--proto):
 *   echo   4-byte big-endian length + payload; the server echoes each frame.
 *   lines  payload + "\n"; the server echoes each line (payload has no "\n").
 *
 * Modes:
 *   load   N connections, each keeps D frames in flight (closed loop) for
 *          --duration seconds after --warmup; every response is verified.
 *   hold   open N connections (at most --connect-window being set up at once),
 *          echo one frame on each, print "READY {json}", hold them until
 *          SIGUSR1/SIGTERM/SIGINT or --hold seconds, then echo one more frame
 *          on each (proving the server still serves all of them) and exit.
 *
 * Verification: the payload of frame `seq` on connection generation `gen` is a
 * pure function of (gen, seq): a tag (gen, seq) followed by a slice of a fixed
 * pattern at an offset derived from (gen, seq); with --min-size/--max-size the
 * size is derived from (gen, seq) too. The expected next response is therefore
 * known without storing what was sent, and any corruption, reordering, loss,
 * duplication or cross-connection mix-up shows up as a mismatch.
 *
 * Output: one JSON line on stdout. Exit status 0 only if no frame was lost or
 * mismatched and no connection failed; 1 on such errors; 2 on bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { PROTO_ECHO, PROTO_LINES };
enum { MODE_LOAD, MODE_HOLD };
enum { C_IDLE, C_CONNECTING, C_OPEN, C_DEAD };
enum { PH_CONNECT, PH_HOLD, PH_RECHECK };

#define TAG_BYTES_ECHO 8   /* binary (gen << 40 | seq) */
#define TAG_BYTES_LINES 16 /* the same 64-bit tag in hex */
#define PATTERN_PERIOD 251 /* prime: offsets never line up with sizes */
#define HIST_LINEAR 1024   /* 1 us resolution up to 1 ms */
#define HIST_SUB 64        /* then 64 sub-buckets per power of two */
#define HIST_BUCKETS (HIST_LINEAR + 48 * HIST_SUB)

typedef struct {
    int fd;
    int state;
    uint64_t gen;            /* unique per (re)connection: part of every tag */
    uint64_t send_seq;       /* next seq to send */
    uint64_t recv_seq;       /* next seq expected back */
    uint64_t gen_sent;       /* frames sent on this generation (churn) */
    uint64_t *sent_ns;       /* ring of send times, indexed seq % depth */
    uint8_t *rbuf;
    size_t rlen, rcap;
    uint8_t *wbuf;
    size_t woff, wlen, wcap;
    int want_out;
    int answered_once;       /* hold mode: first echo answered */
    int rechecked;           /* hold mode: second echo sent */
} conn_t;

/* ---- options ---- */
static const char *opt_host = "127.0.0.1";
static int opt_port = 0;
static const char *opt_unix = NULL;
static int opt_proto = PROTO_ECHO;
static int opt_mode = MODE_LOAD;
static long opt_conns = 50;
static long opt_depth = 1;
static long opt_min = 64, opt_max = 64;
static double opt_duration = 5.0, opt_warmup = 1.0, opt_drain = 5.0;
static double opt_hold = 0.0; /* 0: until a signal */
static double opt_stall = 10.0, opt_connect_timeout = 60.0;
static long opt_churn = 0;
static int opt_crlf = 0; /* lines: end requests with "\r\n" instead of "\n" */
static long opt_connect_window = 256;
static long opt_max_frame = 16 * 1024 * 1024;

/* ---- state ---- */
static int ep = -1;
static conn_t *conns;
static uint8_t *pattern;
static size_t tag_bytes;
static struct sockaddr_storage addr;
static socklen_t addr_len;
static volatile sig_atomic_t sig_release = 0, sig_stop = 0;
static uint64_t next_gen = 1;

static uint64_t n_sent, n_received, n_lost, n_mismatch, n_peer_close, n_connect_err;
static uint64_t n_reconnects, n_io_err, bytes_sent, bytes_received;
static uint64_t m_requests; /* responses inside the measured window */
static uint64_t hist[HIST_BUCKETS];
static uint64_t lat_max_ns, lat_sum_ns;
static int measuring = 0, stopping = 0;
static char first_error[256] = "";
static uint64_t last_progress_ns;
static long n_open = 0, n_pending = 0, n_dead = 0, n_ready = 0;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void note_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_error(const char *fmt, ...) {
    if (first_error[0] != '\0') return; /* the first error explains the rest */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(first_error, sizeof first_error, fmt, ap);
    va_end(ap);
}

static uint64_t mix64(uint64_t x) { /* splitmix64 finaliser */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t frame_size(uint64_t gen, uint64_t seq) {
    if (opt_min == opt_max) return (size_t)opt_min;
    return (size_t)opt_min + (size_t)(mix64(gen * 0x100000001b3ull ^ seq) % (uint64_t)(opt_max - opt_min + 1));
}

static uint64_t frame_tag(uint64_t gen, uint64_t seq) { return (gen << 40) | (seq & 0xffffffffffull); }
static size_t frame_offset(uint64_t gen, uint64_t seq) { return (size_t)((seq * 7 + gen * 13) % PATTERN_PERIOD); }

/* Writes the payload of (gen, seq) of length n into dst. */
static void make_payload(uint8_t *dst, size_t n, uint64_t gen, uint64_t seq) {
    uint64_t tag = frame_tag(gen, seq);
    size_t off = frame_offset(gen, seq);
    uint8_t head[TAG_BYTES_LINES];
    if (opt_proto == PROTO_ECHO) {
        for (int i = 0; i < 8; i++) head[i] = (uint8_t)(tag >> (56 - 8 * i));
    } else {
        static const char hex[] = "0123456789abcdef";
        for (int i = 0; i < 16; i++) head[i] = (uint8_t)hex[(tag >> (60 - 4 * i)) & 0xf];
    }
    size_t h = n < tag_bytes ? n : tag_bytes;
    memcpy(dst, head, h);
    if (n > h) memcpy(dst + h, pattern + off + h, n - h);
}

/* Compares a received payload against the expected one without building it. */
static int payload_ok(const uint8_t *got, size_t n, uint64_t gen, uint64_t seq) {
    uint8_t head[TAG_BYTES_LINES];
    size_t h = n < tag_bytes ? n : tag_bytes;
    make_payload(head, h, gen, seq);
    if (memcmp(got, head, h) != 0) return 0;
    return n == h || memcmp(got + h, pattern + frame_offset(gen, seq) + h, n - h) == 0;
}

static void hist_add(uint64_t ns) {
    uint64_t us = ns / 1000;
    size_t idx;
    if (us < HIST_LINEAR) {
        idx = (size_t)us;
    } else {
        int e = 63 - __builtin_clzll(us); /* >= 10 */
        size_t sub = (size_t)((us >> (e - 6)) & (HIST_SUB - 1));
        idx = HIST_LINEAR + (size_t)(e - 10) * HIST_SUB + sub;
        if (idx >= HIST_BUCKETS) idx = HIST_BUCKETS - 1;
    }
    hist[idx]++;
    lat_sum_ns += ns;
    if (ns > lat_max_ns) lat_max_ns = ns;
}

static double hist_bucket_value(size_t idx) { /* midpoint of the bucket, in us */
    if (idx < HIST_LINEAR) return (double)idx;
    size_t e = (idx - HIST_LINEAR) / HIST_SUB + 10, sub = (idx - HIST_LINEAR) % HIST_SUB;
    double width = (double)(1ull << (e - 6));
    return (double)(1ull << e) + (double)sub * width + width / 2;
}

static double hist_percentile(double p) {
    uint64_t total = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) total += hist[i];
    if (total == 0) return 0.0;
    uint64_t rank = (uint64_t)(p * (double)total + 0.999999);
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank) return hist_bucket_value(i);
    }
    return hist_bucket_value(HIST_BUCKETS - 1);
}

/* ---- connections ---- */

static long inflight(const conn_t *c) { return (long)(c->send_seq - c->recv_seq); }

static void set_out(conn_t *c, int on) {
    if (c->want_out == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u64 = (uint64_t)(c - conns)};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

static void close_fd(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (c->state == C_OPEN) n_open--;
}

/* Abnormal end of a connection: what is in flight is lost, the slot dies. */
static void kill_conn(conn_t *c) {
    if (c->state == C_DEAD) return;
    n_lost += (uint64_t)inflight(c);
    c->recv_seq = c->send_seq;
    if (c->state == C_CONNECTING || (opt_mode == MODE_HOLD && c->state == C_OPEN && !c->answered_once))
        n_pending--;
    close_fd(c);
    c->state = C_DEAD;
    n_dead++;
}

static int open_conn(conn_t *c) {
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        n_connect_err++;
        note_error("socket() failed: errno %d", errno);
        c->state = C_DEAD;
        n_dead++;
        return -1;
    }
    if (addr.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    c->fd = fd;
    c->gen = next_gen++;
    c->send_seq = c->recv_seq = c->gen_sent = 0;
    c->rlen = c->woff = c->wlen = 0;
    c->answered_once = c->rechecked = 0;
    c->want_out = 1;
    c->state = C_CONNECTING;
    n_pending++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = (uint64_t)(c - conns)};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        n_connect_err++;
        note_error("epoll_ctl failed: errno %d", errno);
        kill_conn(c);
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&addr, addr_len) < 0 && errno != EINPROGRESS) {
        n_connect_err++;
        note_error("connect() failed: errno %d", errno);
        kill_conn(c);
        return -1;
    }
    return 0;
}

static int flush_conn(conn_t *c) {
    while (c->woff < c->wlen) {
        ssize_t w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (w > 0) {
            c->woff += (size_t)w;
            bytes_sent += (uint64_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_out(c, 1);
            return 0;
        } else {
            n_io_err++;
            note_error("send() failed: errno %d", errno);
            kill_conn(c);
            return -1;
        }
    }
    c->woff = c->wlen = 0;
    set_out(c, 0);
    return 0;
}

/* Appends one frame to the write buffer (flushed by the caller). */
static void queue_frame(conn_t *c, uint64_t t) {
    if (c->woff > 0) { /* keep unsent bytes at the front so D frames always fit */
        memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
        c->wlen -= c->woff;
        c->woff = 0;
    }
    uint64_t seq = c->send_seq++;
    size_t n = frame_size(c->gen, seq);
    uint8_t *p = c->wbuf + c->wlen;
    if (opt_proto == PROTO_ECHO) {
        p[0] = (uint8_t)(n >> 24); p[1] = (uint8_t)(n >> 16); p[2] = (uint8_t)(n >> 8); p[3] = (uint8_t)n;
        make_payload(p + 4, n, c->gen, seq);
        c->wlen += 4 + n;
    } else {
        make_payload(p, n, c->gen, seq);
        if (opt_crlf) p[n++] = '\r';
        p[n] = '\n';
        c->wlen += n + 1;
    }
    c->sent_ns[seq % (uint64_t)opt_depth] = t;
    c->gen_sent++;
    n_sent++;
}

static int may_send(const conn_t *c) {
    if (stopping || c->state != C_OPEN) return 0;
    if (opt_mode == MODE_HOLD) return 0; /* hold mode sends explicitly */
    return opt_churn == 0 || c->gen_sent < (uint64_t)opt_churn;
}

static void fill(conn_t *c, uint64_t t) {
    while (may_send(c) && inflight(c) < opt_depth) queue_frame(c, t);
}

static void on_connected(conn_t *c, uint64_t t) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
        n_connect_err++;
        note_error("connect failed: errno %d", err);
        kill_conn(c);
        return;
    }
    c->state = C_OPEN;
    n_open++;
    if (opt_mode == MODE_LOAD) n_pending--;
    if (opt_mode == MODE_HOLD) queue_frame(c, t);
    else fill(c, t);
    flush_conn(c);
}

/* One verified response: latency, accounting, and the next frame(s). */
static void on_response(conn_t *c, uint64_t t) {
    uint64_t seq = c->recv_seq++;
    uint64_t dt = t - c->sent_ns[seq % (uint64_t)opt_depth];
    n_received++;
    last_progress_ns = t;
    if (measuring) {
        m_requests++;
        hist_add(dt);
    }
    if (opt_mode == MODE_HOLD) {
        if (!c->answered_once) {
            c->answered_once = 1;
            n_pending--;
            n_ready++;
        } else {
            n_ready++; /* recheck answered */
        }
    }
}

/* Parses and verifies every complete response in rbuf. Returns -1 if the
 * connection was killed. */
static int parse(conn_t *c, uint64_t t) {
    size_t pos = 0;
    for (;;) {
        uint8_t *p = c->rbuf + pos;
        size_t avail = c->rlen - pos;
        size_t n, used;
        if (opt_proto == PROTO_ECHO) {
            if (avail < 4) break;
            n = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
            if (inflight(c) == 0 || n != frame_size(c->gen, c->recv_seq)) {
                n_mismatch++;
                note_error("unexpected frame length %ld (expected %ld)", (long)n,
                           inflight(c) ? (long)frame_size(c->gen, c->recv_seq) : -1L);
                kill_conn(c);
                return -1;
            }
            if (avail < 4 + n) break;
            p += 4;
            used = 4 + n;
        } else {
            /* A response line ends in "\n" or "\r\n" (payloads never hold either). */
            size_t want = inflight(c) ? frame_size(c->gen, c->recv_seq) : 0;
            size_t window = avail < want + 2 ? avail : want + 2;
            uint8_t *nl = memchr(p, '\n', window);
            if (nl == NULL) {
                if (avail < want + 2) break;
                nl = p + avail; /* line longer than expected: force a mismatch */
            }
            n = (size_t)(nl - p);
            used = n + 1;
            if (n > 0 && p[n - 1] == '\r') n--;
            if (inflight(c) == 0 || n != want) {
                n_mismatch++;
                note_error("unexpected line length %ld (expected %ld)", (long)n, (long)want);
                kill_conn(c);
                return -1;
            }
        }
        if (!payload_ok(p, n, c->gen, c->recv_seq)) {
            n_mismatch++;
            note_error("payload mismatch at seq %ld (length %ld)", (long)c->recv_seq, (long)n);
            kill_conn(c);
            return -1;
        }
        pos += used;
        on_response(c, t);
    }
    if (pos > 0) {
        memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
        c->rlen -= pos;
    }
    return 0;
}

static void on_readable(conn_t *c, uint64_t t) {
    for (;;) {
        if (c->rlen == c->rcap) { /* cannot happen with valid frames: rcap > 2 frames */
            n_mismatch++;
            note_error("receive buffer overflow (%ld bytes)", (long)c->rcap);
            kill_conn(c);
            return;
        }
        size_t space = c->rcap - c->rlen;
        ssize_t r = recv(c->fd, c->rbuf + c->rlen, space, 0);
        if (r > 0) {
            bytes_received += (uint64_t)r;
            c->rlen += (size_t)r;
            if (parse(c, t) < 0) return;
            if ((size_t)r < space) break; /* level-triggered: more comes next round */
        } else if (r == 0) {
            n_peer_close++;
            note_error("connection closed by server with %ld frames in flight", inflight(c));
            kill_conn(c);
            return;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            n_io_err++;
            note_error("recv() failed: errno %d", errno);
            kill_conn(c);
            return;
        }
    }
    if (c->state != C_OPEN) return;
    if (opt_mode == MODE_LOAD) {
        if (opt_churn > 0 && c->gen_sent >= (uint64_t)opt_churn && inflight(c) == 0 && !stopping) {
            close_fd(c); /* churn: orderly close, then a fresh connection */
            c->state = C_IDLE;
            n_reconnects++;
            open_conn(c);
            return;
        }
        fill(c, t);
    }
    if (c->wlen > c->woff) flush_conn(c);
}

/* ---- setup and reporting ---- */

static void on_signal(int sig) {
    if (sig == SIGUSR1) sig_release = 1;
    else sig_stop = 1;
}

static int resolve(void) {
    memset(&addr, 0, sizeof addr);
    if (opt_unix) {
        struct sockaddr_un *su = (struct sockaddr_un *)&addr;
        if (strlen(opt_unix) >= sizeof su->sun_path) return -1;
        su->sun_family = AF_UNIX;
        strcpy(su->sun_path, opt_unix);
        addr_len = sizeof *su;
        return 0;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", opt_port);
    if (getaddrinfo(opt_host, port, &hints, &res) != 0 || res == NULL) return -1;
    memcpy(&addr, res->ai_addr, res->ai_addrlen);
    addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadclient [--host H --port P | --unix PATH] [--proto echo|lines]\n"
            "  [--mode load|hold] [--conns N] [--depth D] [--size S | --min-size A --max-size B]\n"
            "  [--duration S] [--warmup S] [--drain S] [--churn K] [--hold S] [--stall S]\n"
            "  [--connect-window N] [--connect-timeout S] [--crlf]\n");
}

static void print_report(double measured_s, double connect_s, long held) {
    uint64_t errors = n_lost + n_mismatch + n_peer_close + n_connect_err + n_io_err;
    printf("{\"mode\":\"%s\",\"proto\":\"%s\",\"conns\":%ld,\"depth\":%ld,\"size_min\":%ld,\"size_max\":%ld,"
           "\"churn\":%ld,\"duration_s\":%.3f,\"requests\":%llu,\"rps\":%.1f,"
           "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"mean_us\":%.1f,"
           "\"sent\":%llu,\"received\":%llu,\"lost\":%llu,\"mismatches\":%llu,\"peer_closes\":%llu,"
           "\"connect_errors\":%llu,\"io_errors\":%llu,\"reconnects\":%llu,\"bytes_sent\":%llu,"
           "\"bytes_received\":%llu,\"connect_s\":%.3f,\"held\":%ld,\"errors\":%llu,\"first_error\":\"%s\"}\n",
           opt_mode == MODE_LOAD ? "load" : "hold", opt_proto == PROTO_ECHO ? "echo" : "lines", opt_conns,
           opt_depth, opt_min, opt_max, opt_churn, measured_s, (unsigned long long)m_requests,
           measured_s > 0 ? (double)m_requests / measured_s : 0.0, hist_percentile(0.50), hist_percentile(0.90),
           hist_percentile(0.99), hist_percentile(0.999), (double)lat_max_ns / 1000.0,
           m_requests ? (double)lat_sum_ns / 1000.0 / (double)m_requests : 0.0, (unsigned long long)n_sent,
           (unsigned long long)n_received, (unsigned long long)n_lost, (unsigned long long)n_mismatch,
           (unsigned long long)n_peer_close, (unsigned long long)n_connect_err, (unsigned long long)n_io_err,
           (unsigned long long)n_reconnects, (unsigned long long)bytes_sent, (unsigned long long)bytes_received,
           connect_s, held, (unsigned long long)errors, first_error);
    fflush(stdout);
}

static int parse_args(int argc, char **argv) {
    static struct option longopts[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"unix", 1, 0, 'u'}, {"proto", 1, 0, 'P'},
        {"mode", 1, 0, 'm'}, {"conns", 1, 0, 'c'}, {"depth", 1, 0, 'd'}, {"size", 1, 0, 's'},
        {"min-size", 1, 0, 'a'}, {"max-size", 1, 0, 'b'}, {"duration", 1, 0, 't'}, {"warmup", 1, 0, 'w'},
        {"drain", 1, 0, 'D'}, {"churn", 1, 0, 'k'}, {"hold", 1, 0, 'H'}, {"stall", 1, 0, 'S'},
        {"connect-window", 1, 0, 'W'}, {"connect-timeout", 1, 0, 'T'}, {"crlf", 0, 0, 'r'}, {"help", 0, 0, '?'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (o) {
        case 'h': opt_host = optarg; break;
        case 'p': opt_port = atoi(optarg); break;
        case 'u': opt_unix = optarg; break;
        case 'P':
            if (strcmp(optarg, "echo") == 0) opt_proto = PROTO_ECHO;
            else if (strcmp(optarg, "lines") == 0) opt_proto = PROTO_LINES;
            else return -1;
            break;
        case 'm':
            if (strcmp(optarg, "load") == 0) opt_mode = MODE_LOAD;
            else if (strcmp(optarg, "hold") == 0) opt_mode = MODE_HOLD;
            else return -1;
            break;
        case 'c': opt_conns = atol(optarg); break;
        case 'd': opt_depth = atol(optarg); break;
        case 's': opt_min = opt_max = atol(optarg); break;
        case 'a': opt_min = atol(optarg); break;
        case 'b': opt_max = atol(optarg); break;
        case 't': opt_duration = atof(optarg); break;
        case 'w': opt_warmup = atof(optarg); break;
        case 'D': opt_drain = atof(optarg); break;
        case 'k': opt_churn = atol(optarg); break;
        case 'H': opt_hold = atof(optarg); break;
        case 'S': opt_stall = atof(optarg); break;
        case 'W': opt_connect_window = atol(optarg); break;
        case 'T': opt_connect_timeout = atof(optarg); break;
        case 'r': opt_crlf = 1; break;
        default: return -1;
        }
    }
    if (optind != argc || opt_conns < 1 || opt_depth < 1 || opt_min < 1 || opt_max < opt_min ||
        opt_max > opt_max_frame || opt_duration <= 0 || opt_warmup < 0 || opt_churn < 0 || opt_connect_window < 1)
        return -1;
    if (!opt_unix && (opt_port <= 0 || opt_port > 65535)) return -1;
    if (opt_mode == MODE_HOLD) opt_depth = 1;
    return 0;
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void handle_event(struct epoll_event *e, uint64_t t) {
    conn_t *c = &conns[e->data.u64];
    if (c->state == C_DEAD || c->fd < 0) return;
    if (c->state == C_CONNECTING) {
        if (e->events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c, t);
        return;
    }
    if (e->events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c, t);
    if (c->state == C_OPEN && (e->events & EPOLLOUT)) flush_conn(c);
}

int main(int argc, char **argv) {
    if (parse_args(argc, argv) < 0) {
        usage();
        return 2;
    }
    if (resolve() < 0) {
        fprintf(stderr, "loadclient: cannot resolve the server address\n");
        return 2;
    }
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    tag_bytes = opt_proto == PROTO_ECHO ? TAG_BYTES_ECHO : TAG_BYTES_LINES;
    pattern = malloc((size_t)opt_max + PATTERN_PERIOD + 1);
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (size_t i = 0; i < (size_t)opt_max + PATTERN_PERIOD + 1; i++)
        pattern[i] = opt_proto == PROTO_ECHO ? (uint8_t)(i * 131 + 7) : (uint8_t)alnum[(i * 17 + 5) % 62];

    size_t frame_max = (size_t)opt_max + 4; /* echo header, or the line end with slack */
    conns = calloc((size_t)opt_conns, sizeof *conns);
    for (long i = 0; i < opt_conns; i++) {
        conn_t *c = &conns[i];
        c->fd = -1;
        c->state = C_IDLE;
        c->rcap = 2 * frame_max + (opt_mode == MODE_LOAD ? 4096 : 64);
        c->wcap = (size_t)opt_depth * frame_max;
        c->rbuf = malloc(c->rcap);
        c->wbuf = malloc(c->wcap);
        c->sent_ns = calloc((size_t)opt_depth, sizeof(uint64_t));
        if (!c->rbuf || !c->wbuf || !c->sent_ns) {
            fprintf(stderr, "loadclient: out of memory\n");
            return 2;
        }
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event evs[1024];

    uint64_t t0 = now_ns(), t_measure = 0, t_stop = 0, t_drain_end = 0, t_hold_end = 0;
    double measured_s = 0, connect_s = 0;
    int phase = PH_CONNECT;
    long next_open = 0;
    last_progress_ns = t0;
    if (opt_mode == MODE_LOAD) {
        t_measure = t0 + (uint64_t)(opt_warmup * 1e9);
        t_stop = t_measure + (uint64_t)(opt_duration * 1e9);
        if (opt_warmup == 0) measuring = 1;
    }

    for (;;) {
        /* Open connections, at most connect_window being set up at once. */
        while (next_open < opt_conns && n_pending < opt_connect_window && !stopping) open_conn(&conns[next_open++]);

        int n = epoll_wait(ep, evs, 1024, 10);
        uint64_t t = now_ns();
        for (int i = 0; i < n; i++) handle_event(&evs[i], t);

        if (opt_mode == MODE_LOAD) {
            if (!measuring && !stopping && t >= t_measure) {
                measuring = 1; /* warm-up over: only count what follows */
                t_measure = t;
            }
            if (!stopping && (t >= t_stop || sig_stop || n_dead == opt_conns)) {
                stopping = 1; /* no new frames; wait for those in flight */
                measured_s = (double)(t - t_measure) / 1e9;
                if (t < t_measure) measured_s = 0;
                measuring = 0;
                t_drain_end = t + (uint64_t)(opt_drain * 1e9);
            }
            if (stopping) {
                long out = 0;
                for (long i = 0; i < opt_conns; i++)
                    if (conns[i].state == C_OPEN) out += inflight(&conns[i]);
                if (out == 0 || t >= t_drain_end) break;
            }
        } else {
            if (phase == PH_CONNECT) {
                if (n_ready + n_dead >= opt_conns && next_open >= opt_conns) {
                    connect_s = (double)(t - t0) / 1e9;
                    phase = PH_HOLD;
                    t_hold_end = opt_hold > 0 ? t + (uint64_t)(opt_hold * 1e9) : 0;
                    printf("READY {\"held\":%ld,\"dead\":%ld,\"connect_s\":%.3f}\n", n_open, n_dead, connect_s);
                    fflush(stdout);
                } else if (t - t0 > (uint64_t)(opt_connect_timeout * 1e9) || sig_stop) {
                    note_error("only %ld of %ld connections answered before the connect timeout", n_ready, opt_conns);
                    for (long i = 0; i < opt_conns; i++) kill_conn(&conns[i]);
                    break;
                }
            }
            if (phase == PH_HOLD && (sig_release || sig_stop || (t_hold_end && t >= t_hold_end))) {
                phase = PH_RECHECK; /* prove every held connection is still served */
                n_ready = 0;
                for (long i = 0; i < opt_conns; i++) {
                    conn_t *c = &conns[i];
                    if (c->state != C_OPEN) continue;
                    queue_frame(c, t);
                    c->rechecked = 1;
                    flush_conn(c);
                }
                last_progress_ns = t;
            }
            if (phase == PH_RECHECK) {
                long out = 0;
                for (long i = 0; i < opt_conns; i++)
                    if (conns[i].state == C_OPEN) out += inflight(&conns[i]);
                if (out == 0) break;
            }
        }
        /* Stall guard: frames in flight but nothing answered for too long. */
        if (phase != PH_HOLD && t - last_progress_ns > (uint64_t)(opt_stall * 1e9)) {
            long out = 0;
            for (long i = 0; i < opt_conns; i++)
                if (conns[i].state == C_OPEN) out += inflight(&conns[i]);
            if (out > 0) {
                note_error("stalled: %ld frames unanswered for %ld s", out, (long)opt_stall);
                break;
            }
            last_progress_ns = t;
        }
    }
    /* Whatever is still in flight now was never answered. */
    for (long i = 0; i < opt_conns; i++) {
        conn_t *c = &conns[i];
        if (c->state == C_CONNECTING) {
            n_connect_err++;
            note_error("connection still not established at the end");
        }
        if ((c->state == C_OPEN || c->state == C_CONNECTING) && inflight(c) > 0) {
            note_error("%ld frames still unanswered at the end", inflight(c));
            n_lost += (uint64_t)inflight(c);
            c->recv_seq = c->send_seq;
        }
    }
    long held = opt_mode == MODE_HOLD ? n_open : 0;
    for (long i = 0; i < opt_conns; i++) close_fd(&conns[i]);
    print_report(measured_s, connect_s, held);
    uint64_t errors = n_lost + n_mismatch + n_peer_close + n_connect_err + n_io_err;
    if (opt_mode == MODE_HOLD && n_ready < opt_conns && errors == 0) return 1;
    return errors ? 1 : 0;
}
