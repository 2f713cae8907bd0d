-- thingwire gateway filter (Envoy Lua, LuaJIT / Lua 5.1). Runs before grpc_json_transcoder.
--
-- config.py prepends `local CONFIG = {rules, default_shape, max_request_body_bytes}`.
--
-- Request side:  moves `?authorization=<token>` into the Authorization header (an existing
--                header wins) and out of the path, and remembers path and method.
-- Response side: applies `x-http-status` and `x-retry-after` sent as gRPC initial metadata,
--                removes grpc-* headers, and rewrites every error body into the documented
--                shape of the request's API family. Native gRPC passes untouched.

local META = "thingwire.gateway"

local GRPC_HEADERS = { "grpc-status", "grpc-message", "grpc-accept-encoding", "grpc-encoding" }

local REASONS = {
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict",
  [412] = "Precondition Failed", [413] = "Payload Too Large", [415] = "Unsupported Media Type",
  [429] = "Too Many Requests", [499] = "Client Closed Request", [500] = "Internal Server Error",
  [501] = "Not Implemented", [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout",
}

local function reason(status)
  return REASONS[status] or "Error"
end

---------------------------------------------------------------------------------------------
-- JSON: just enough to write error bodies and to read the transcoder's {"code","message"}.

local ESCAPES = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }

-- The length of the well-formed UTF-8 sequence at byte i of s, or nil (RFC 3629: no
-- overlong forms, no surrogates, nothing above U+10FFFF). Python's protobuf rejects what
-- this rejects, so the gateway can refuse such text before the server has to.
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

-- s with every byte that is not part of well-formed UTF-8 replaced by U+FFFD.
local function to_utf8(s)
  if is_utf8(s) then return s end
  local out, i = {}, 1
  while i <= #s do
    local len = utf8_length_at(s, i)
    if len then
      out[#out + 1] = s:sub(i, i + len - 1)
      i = i + len
    else
      out[#out + 1] = "\239\191\189"
      i = i + 1
    end
  end
  return table.concat(out)
end

-- A JSON string literal: always valid UTF-8, control characters escaped.
local function json_string(s)
  return '"' .. to_utf8(tostring(s)):gsub('[%c"\\]', function(c)
    return ESCAPES[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local NULL = {}

local function utf8_char(code)
  if code < 0x80 then return string.char(code) end
  if code < 0x800 then
    return string.char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40)
  end
  if code < 0x10000 then
    return string.char(0xE0 + math.floor(code / 0x1000),
      0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
  end
  return string.char(0xF0 + math.floor(code / 0x40000), 0x80 + math.floor(code / 0x1000) % 0x40,
    0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
end

local decode_value

local function skip_ws(s, i)
  return s:find("[^ \t\r\n]", i) or #s + 1
end

local function decode_string(s, i)
  -- s:sub(i, i) == '"'
  local out, j = {}, i + 1
  while true do
    local c = s:sub(j, j)
    if c == "" then error("unterminated string") end
    if c == '"' then return table.concat(out), j + 1 end
    if c == "\\" then
      local e = s:sub(j + 1, j + 1)
      local simple = ({ ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f',
                        n = '\n', r = '\r', t = '\t' })[e]
      if simple then
        out[#out + 1], j = simple, j + 2
      elseif e == "u" then
        local code = tonumber(s:sub(j + 2, j + 5), 16)
        if not code then error("bad unicode escape") end
        j = j + 6
        if code >= 0xD800 and code <= 0xDBFF and s:sub(j, j + 1) == "\\u" then
          local low = tonumber(s:sub(j + 2, j + 5), 16)
          if low and low >= 0xDC00 and low <= 0xDFFF then
            code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
            j = j + 6
          end
        end
        out[#out + 1] = utf8_char(code)
      else
        error("bad escape")
      end
    else
      local k = s:find('["\\]', j) or #s + 1
      out[#out + 1], j = s:sub(j, k - 1), k
    end
  end
end

local function decode_container(s, i, close, item)
  local result, j = {}, skip_ws(s, i + 1)
  if s:sub(j, j) == close then return result, j + 1 end
  while true do
    j = item(result, j)
    j = skip_ws(s, j)
    local c = s:sub(j, j)
    if c == close then return result, j + 1 end
    if c ~= "," then error("expected ',' or '" .. close .. "'") end
    j = skip_ws(s, j + 1)
  end
end

decode_value = function(s, i)
  i = skip_ws(s, i)
  local c = s:sub(i, i)
  if c == "{" then
    return decode_container(s, i, "}", function(obj, j)
      if s:sub(j, j) ~= '"' then error("expected key") end
      local key, k = decode_string(s, j)
      k = skip_ws(s, k)
      if s:sub(k, k) ~= ":" then error("expected ':'") end
      obj[key], k = decode_value(s, k + 1)
      return k
    end)
  elseif c == "[" then
    return decode_container(s, i, "]", function(arr, j)
      arr[#arr + 1], j = decode_value(s, j)
      return j
    end)
  elseif c == '"' then
    return decode_string(s, i)
  end
  for word, value in pairs({ ["true"] = true, ["false"] = false, ["null"] = NULL }) do
    if s:sub(i, i + #word - 1) == word then return value, i + #word end
  end
  local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  if num and num ~= "" and tonumber(num) then return tonumber(num), i + #num end
  error("unexpected character at " .. i)
end

-- Returns the decoded value, or nil if `s` is not one complete JSON value.
local function json_decode(s)
  local ok, value, j = pcall(decode_value, s, 1)
  if not ok or skip_ws(s, j) <= #s then return nil end
  return value
end

---------------------------------------------------------------------------------------------
-- Request side.

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

-- Native gRPC is exactly application/grpc or application/grpc+<codec> (any parameters
-- after ";"); application/grpc-web and the like are REST to the transcoder, so they get the
-- REST treatment here too. Mirrors the gRPC route's regex in config.py.
local function is_grpc(content_type)
  if content_type == nil then return false end
  local media = content_type:lower():gsub(";.*$", ""):gsub("%s+$", "")
  return media == "application/grpc" or media:find("^application/grpc%+") ~= nil
end


---------------------------------------------------------------------------------------------
-- Response side.

local function family_shape(path)
  if path then
    for _, rule in ipairs(CONFIG.rules) do
      if path:sub(1, #rule.prefix) == rule.prefix then return rule.shape end
    end
  end
  return CONFIG.default_shape
end

local function render_error(shape, status, message)
  local m = json_string(message)
  if shape == "thinger" then
    return '{"error":{"message":' .. m .. '}}'
  elseif shape == "json_api" then
    return '{"errors":[{"status":"' .. status .. '","title":' .. json_string(reason(status))
      .. ',"detail":' .. m .. '}]}'
  elseif shape == "error_string" then
    return '{"error":' .. m .. '}'
  end
  return '{"detail":' .. m .. '}'
end

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- The transcoder's 400s: JSON syntax errors ("Unexpected token.", "Expected : between
-- key:value pair.", …) or valid JSON of the wrong shape (": Root element must be a message.",
-- "email: invalid value …", also for query parameters).
local function bad_request_message(text)
  local line = trim((text:gsub("\n.*$", ""))):gsub("^: ", "")
  if line == reason(400) then
    -- Envoy's own codec refused the request (an illegal header byte, say), not its body.
    return "bad request: the request is malformed"
  elseif line:find("Root element must be a message", 1, true) then
    return "invalid request: the body must be a JSON object"
  elseif line:find("invalid value", 1, true) then
    return "invalid request: " .. line
  end
  return "request body is not valid JSON: " .. line
end

-- The message for an error body Envoy wrote itself (text, not JSON).
local function envoy_message(status, text, state)
  if status == 404 or status == 405 then
    return "no such endpoint: " .. (state.method or "") .. " " .. (state.path or "")
  elseif status == 413 then
    return "request body is too large (limit " .. CONFIG.max_request_body_bytes .. " bytes)"
  elseif status == 400 and text ~= "" then
    return bad_request_message(text)
  elseif status == 503 then
    return "service unavailable: the thingwire server cannot be reached"
  elseif status == 504 then
    return "gateway timeout: the thingwire server did not answer in time"
  end
  text = trim(text)
  if text == "" then return reason(status) end
  return text
end

-- The new body for an error response, or nil to leave the server's own JSON alone.
local function error_body(status, raw, state)
  local value = json_decode(raw)
  local shape = family_shape(state.path)
  if type(value) == "table" then
    if type(value.code) == "number" and type(value.message) == "string" then
      local message = value.message
      -- UNKNOWN (2) and INTERNAL (13) can carry a server's internals: never shown.
      if value.code == 2 or value.code == 13 then message = "internal error" end
      if message == "" then message = reason(status) end
      return render_error(shape, status, message)
    end
    return nil
  end
  return render_error(shape, status, envoy_message(status, raw, state))
end

local function apply_metadata_headers(headers, status)
  local wanted = headers:get("x-http-status")
  if wanted ~= nil then
    headers:remove("x-http-status")
    local code = tonumber(wanted)
    -- A failed call keeps the status of its gRPC code.
    if code and code >= 100 and code <= 599 and status < 400 then
      headers:replace(":status", tostring(math.floor(code)))
      status = math.floor(code)
    end
  end
  local retry = headers:get("x-retry-after")
  if retry ~= nil then
    headers:remove("x-retry-after")
    headers:replace("retry-after", retry)
  end
  for _, name in ipairs(GRPC_HEADERS) do headers:remove(name) end
  return status
end

function envoy_on_response(handle)
  local state = handle:streamInfo():dynamicMetadata():get(META) or {}
  if state.grpc then return end
  local headers = handle:headers()
  local status = apply_metadata_headers(headers, tonumber(headers:get(":status")) or 0)
  if status < 400 then return end
  -- Headers before the body: the error will be JSON whatever it was (a JSON type the server
  -- chose, such as application/vnd.api+json, stays).
  local content_type = headers:get("content-type") or ""
  if not content_type:lower():find("json", 1, true) then
    headers:replace("content-type", "application/json")
  end
  if state.method == "HEAD" then return end
  local body = handle:body(true)
  local raw = ""
  if body:length() > 0 then raw = body:getBytes(0, body:length()) end
  local new = error_body(status, raw, state)
  if new ~= nil then body:setBytes(new) end
end

---------------------------------------------------------------------------------------------
-- Request side (defined last: it answers bad requests with the response side's helpers).

function envoy_on_request(handle)
  local headers = handle:headers()
  local meta = handle:streamInfo():dynamicMetadata()
  if is_grpc(headers:get("content-type")) then
    meta:set(META, "grpc", true)
    return
  end
  local path = move_authorization(headers, headers:get(":path") or "/")
  local bare = path:gsub("%?.*$", "")
  meta:set(META, "path", bare)
  meta:set(META, "method", headers:get(":method") or "")
  if not is_utf8(url_decode(path)) then
    -- Text fields must be UTF-8; answered here rather than as a server-side decode error.
    handle:respond(
      { [":status"] = "400", ["content-type"] = "application/json" },
      render_error(family_shape(bare), 400, "invalid request: the path or query is not valid UTF-8")
    )
  end
end
