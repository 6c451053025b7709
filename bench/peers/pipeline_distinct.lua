-- wrk script: like pipeline.lua (N requests back to back per round trip), but
-- every request carries its own X-Request-Id value, as requests behind a proxy
-- do, so no two heads on the wire are byte-identical.
-- Usage: wrk ... -s pipeline_distinct.lua URL -- 16
local depth = 1
local counter = 0

init = function(args)
  depth = tonumber(args[1]) or 1
end

request = function()
  local r = {}
  for i = 1, depth do
    counter = counter + 1
    r[i] = wrk.format(nil, nil, { ["X-Request-Id"] = string.format("%016x", counter) })
  end
  return table.concat(r)
end
