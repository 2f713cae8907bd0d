-- thingwire gateway filter (Envoy Lua, LuaJIT / Lua 5.1), REST routes only (it is disabled
-- on the native gRPC route). Runs before grpc_json_transcoder.
--
-- config.py prepends `local CONFIG = {...}`. The filter reads no JSON: error bodies are
-- rendered by the server (an rpc's errors) or by local_reply_config (Envoy's own replies).
--
-- Request side:  drops headers gRPC reserves, moves `?authorization=<token>` into the
--                Authorization header, refuses an over-long URI (414) and a path or query
--                that is not UTF-8 (400); the refusals are local replies, shaped by
--                local_reply_config.
-- Response side: copies the server's ready error body and HTTP status, removes grpc-*
--                headers, and completes the message of the transcoder's own 400s.

-- Headers a REST client may not send: gRPC reads them (a bad grpc-timeout, grpc-encoding or
-- *-bin value fails the call inside the server), and our own markers.
local function reserved(name)
  return name:sub(1, 5) == "grpc-" or name:sub(-4) == "-bin" or name == "te"
    or name:sub(1, 11) == "x-thingwire" or name == "x-http-status"
end

local GRPC_HEADERS = { "grpc-status", "grpc-message", "grpc-accept-encoding", "grpc-encoding" }
local ERROR_BODY = "x-thingwire-error-body"

---------------------------------------------------------------------------------------------
-- Request side.

-- The length of the well-formed UTF-8 sequence at byte i of s, or nil (RFC 3629: no
-- overlong forms, no surrogates, nothing above U+10FFFF). Python's protobuf rejects what
-- this rejects; the transcoder would pass such bytes on and the server fail to decode them.
local function utf8_length_at(s, i)
  local c = s:byte(i)
  if c < 0x80 then return 1 end
  local len, low, high = nil, 0x80, 0xBF
  if c >= 0xC2 and c <= 0xDF then len = 2
  elseif c >= 0xE0 and c <= 0xEF then
    len = 3
    if c == 0xE0 then low = 0xA0 elseif c == 0xED then high = 0x9F end
  elseif c >= 0xF0 and c <= 0xF4 then
    len = 4
    if c == 0xF0 then low = 0x90 elseif c == 0xF4 then high = 0x8F end
  else
    return nil
  end
  local second = s:byte(i + 1)
  if not second or second < low or second > high then return nil end
  for j = i + 2, i + len - 1 do
    local b = s:byte(j)
    if not b or b < 0x80 or b > 0xBF then return nil end
  end
  return len
end

local function is_utf8(s)
  local i = 1
  while i <= #s do
    local len = utf8_length_at(s, i)
    if not len then return false end
    i = i + len
  end
  return true
end

local function url_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Splits `query` into the authorization value (first non-empty one) and the other parameters.
-- `found` is false when there is no authorization parameter at all.
local function take_authorization(query)
  local token, kept, found = nil, {}, false
  for part in query:gmatch("[^&]+") do
    local key, value = part:match("^([^=]*)=?(.*)$")
    if url_decode(key):lower() == "authorization" then
      found = true
      if token == nil and value ~= "" then token = url_decode(value) end
    else
      kept[#kept + 1] = part
    end
  end
  return token, kept, found
end

local function move_authorization(headers, path)
  local base, query = path:match("^([^?]*)%?(.*)$")
  if base == nil or not query:lower():find("authorization", 1, true) then return path end
  local token, kept, found = take_authorization(query)
  if not found then return path end
  local existing = headers:get("authorization")
  -- Only printable ASCII can travel as gRPC metadata; anything else would make the hop to
  -- the server fail (a 503). Such a value is dropped, and the call is simply unauthenticated.
  if token ~= nil and token:find("[^%w%p ]") then token = nil end
  if token ~= nil and (existing == nil or existing == "") then
    if not token:find(" ", 1, true) then token = "Bearer " .. token end
    headers:replace("authorization", token)
  end
  local new_path = base
  if #kept > 0 then new_path = base .. "?" .. table.concat(kept, "&") end
  headers:replace(":path", new_path)
  return new_path
end

-- Answers `status` at once; local_reply_config shapes it with `message` (the marker header
-- tells it that this text is ours to show).
local function refuse(handle, status, message)
  handle:headers():replace(CONFIG.reject_header, "1")
  handle:respond({ [":status"] = tostring(status) }, message)
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local drop = {}
  for name, _ in pairs(headers) do
    if reserved(name:lower()) then drop[#drop + 1] = name end
  end
  for _, name in ipairs(drop) do headers:remove(name) end
  local path = headers:get(":path") or "/"
  if #path > CONFIG.max_uri_bytes then
    refuse(handle, 414, "request URI is too long (limit " .. CONFIG.max_uri_bytes .. " bytes)")
    return
  end
  path = move_authorization(headers, path)
  if not is_utf8(url_decode(path)) then
    -- Text fields must be UTF-8; answered here rather than as a server-side decode error.
    refuse(handle, 400, "invalid request: the path or query is not valid UTF-8")
  end
end

---------------------------------------------------------------------------------------------
-- Response side.

-- The transcoder's 400s come as NOT_JSON .. <its text>; local_reply_config cannot choose a
-- message by the text, so valid JSON of the wrong shape is told apart here by substring
-- (the text sits inside the JSON Envoy rendered and escaped; nothing is parsed).
local function plain(s) return (s:gsub("%p", "%%%0")) end

-- Cuts the escaped string that starts at byte `from` at its first escaped newline: the
-- transcoder's further lines echo the body around the error.
local function first_line(body, from)
  local i = from
  while i <= #body do
    local c = body:sub(i, i)
    if c == '"' then return body end
    if c == "\\" then
      if body:sub(i + 1, i + 1) == "n" then
        local j = i + 2
        while j <= #body do
          local d = body:sub(j, j)
          if d == '"' then return body:sub(1, i - 1) .. body:sub(j) end
          j = j + (d == "\\" and 2 or 1)
        end
        return body
      end
      i = i + 2
    else
      i = i + 1
    end
  end
  return body
end

local function finish_transcoder_message(body)
  local start, stop = body:find(CONFIG.not_json, 1, true)
  if start == nil then return body end
  body = first_line(body, stop + 1)
  local prefix = plain(CONFIG.not_json)
  local root = prefix .. plain(": Root element must be a message.")
  local shaped = body:gsub(root, "invalid request: the body must be a JSON object", 1)
  if shaped ~= body then return shaped end
  if body:find("invalid value", 1, true) then
    local fixed, count = body:gsub(prefix .. ": ", "invalid request: ", 1)
    if count == 0 then fixed = body:gsub(prefix, "invalid request: ", 1) end
    return fixed
  end
  return body
end

-- Envoy's json_format sorts keys, so its JSON:API errors come as {detail, status, title};
-- the documented order is {status, title, detail}. status and title are ours (no quotes
-- inside), so the escaped detail is everything between the fixed head and tail.
local JSON_API = '^{"errors":%[{"detail":(.*),"status":("?%d+"?),"title":"([^"]*)"}%]}$'

local function in_documented_order(body)
  local detail, status, title = body:match(JSON_API)
  if detail == nil then return body end
  return '{"errors":[{"status":' .. status .. ',"title":"' .. title .. '","detail":' .. detail
    .. '}]}'
end

function envoy_on_response(handle)
  local headers = handle:headers()
  local status = tonumber(headers:get(":status")) or 0
  local wanted = tonumber(headers:get("x-http-status") or "")
  local ready = headers:get(ERROR_BODY)
  local shaped = headers:get(CONFIG.shaped_header) ~= nil
  local transcoder = headers:get(CONFIG.transcoder_header) ~= nil
  -- Headers before the body (Envoy 1.40 wants it so).
  headers:remove("x-http-status")
  headers:remove(ERROR_BODY)
  headers:remove(CONFIG.shaped_header)
  headers:remove(CONFIG.transcoder_header)
  for _, name in ipairs(GRPC_HEADERS) do headers:remove(name) end
  if wanted and wanted >= 100 and wanted <= 599 then
    status = math.floor(wanted)
    headers:replace(":status", tostring(status))
  end
  if status < 400 then return end
  headers:replace("content-type", "application/json")
  local body = handle:body(true)
  if body == nil then return end  -- HEAD, or nothing to shape
  if shaped then
    -- json_format ends its output with a newline; the bodies we document do not.
    local text = body:getBytes(0, body:length()):gsub("\n$", "")
    if transcoder then text = finish_transcoder_message(text) end
    body:setBytes(in_documented_order(text))
  elseif ready ~= nil then
    body:setBytes(ready)
  elseif not shaped then
    -- An error the server did not render (grpc's own, e.g. UNIMPLEMENTED): the route's
    -- family body for the status, never the server's message.
    local fallback = handle:metadata():get("fallback") or {}
    body:setBytes(fallback[tostring(status)] or fallback["500"] or "{}")
  end
end
