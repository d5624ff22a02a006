-- wrk: POST each line of $BODIES to $ROUTE in turn (one JSON body per line).
local bodies = {}
for line in io.lines(os.getenv("BODIES")) do bodies[#bodies + 1] = line end
local route = os.getenv("ROUTE") or "/v1/classify"
local headers = { ["Content-Type"] = "application/json" }
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", route, headers, bodies[i])
end
