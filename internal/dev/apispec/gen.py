# Not shipped: the one-off generator kept next to the checker so the document's repeated
# parts (error answers, admin statuses) stay consistent when a route is added. Run:
#   python3 internal/dev/apispec/gen.py > internal/admin/openapi.json
import json

def ref(name): return {"$ref": "#/components/schemas/" + name}
def jref(name): return {"description": "", "content": {"application/json": {"schema": ref(name)}}}
ERR = {"400": "the body or query does not parse (code malformed)",
       "401": "bearer token missing or wrong (code unauthorized)",
       "404": "no such route, campaign or run (code not_found)",
       "405": "method not allowed on this path (code method_not_allowed)",
       "409": "the campaign's status forbids the change (code conflict)",
       "413": "over the documented size limit (code too_large)",
       "422": "parses but is invalid; the message names the field (code invalid)",
       "429": "rate limited (code rate_limited)",
       "502": "WeChat failed to answer (code upstream)"}
def err(code):
    return {"description": ERR[code], "content": {"application/json": {"schema": ref("Error")}}}
def ok(status, schema, desc):
    r = {"description": desc}
    if schema: r["content"] = {"application/json": {"schema": ref(schema)}}
    return {status: r}
def op(summary, responses, errs, body=None, params=None, tags=None, security=True, extra=None):
    o = {"summary": summary, "responses": dict(responses)}
    for e in errs: o["responses"][e] = err(e)
    if body: o["requestBody"] = body
    if params: o["parameters"] = params
    if tags: o["tags"] = tags
    if not security: o["security"] = []
    if extra: o.update(extra)
    return o
def q(name, desc, required=False, schema=None):
    return {"name": name, "in": "query", "required": required, "description": desc, "schema": schema or {"type": "string"}}
def p(name, desc):
    return {"name": name, "in": "path", "required": True, "description": desc, "schema": {"type": "string"}}
def jbody(schema, desc=""):
    return {"required": True, "description": desc, "content": {"application/json": {"schema": ref(schema)}}}
ADMIN = ["401"]
ID = p("id", "campaign id")
S = {}
S["Error"] = {"type": "object", "required": ["code", "message"], "additionalProperties": False,
  "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}
S["GatewayError"] = {"type": "object", "required": ["message"], "additionalProperties": False,
  "description": "API Gateway's own answer (no route, payload over 10 MB)", "properties": {"message": {"type": "string"}}}
S["DataValue"] = {"type": "object", "required": ["value"], "properties": {"value": {"type": "string"}, "color": {"type": "string"}}}
S["Message"] = {"type": "object", "required": ["kind", "templateId", "data"], "properties": {
  "kind": {"enum": ["subscribe", "template"]}, "templateId": {"type": "string"}, "page": {"type": "string"},
  "data": {"type": ["object", "null"], "additionalProperties": ref("DataValue")},
  "emphasisKeyword": {"type": "string"}, "miniprogramState": {"enum": ["developer", "trial", "formal"]}, "lang": {"type": "string"}}}
S["Segment"] = {"type": "object", "properties": {k: {"type": "array", "items": {"type": "string"}} for k in ["regions", "industries", "tags"]}}
S["Audience"] = {"type": "object", "required": ["kind"], "properties": {"kind": {"enum": ["list", "segment", "reachable"]}, "segment": ref("Segment")}}
S["Schedule"] = {"type": "object", "properties": {"at": {"type": "string", "format": "date-time"}, "cron": {"type": "string"}, "timeZone": {"type": "string"}}}
S["Policy"] = {"type": "object", "properties": {"skipOptedOut": {"type": "boolean"}, "transactional": {"type": "boolean"},
  "quietHours": {"type": "object"}, "holdoutPercent": {"type": "integer", "minimum": 0, "maximum": 50}, "retryBudget": {"type": "integer", "minimum": 1, "maximum": 10}}}
S["CampaignIn"] = {"type": "object", "required": ["appId", "name", "message", "audience"], "additionalProperties": False, "properties": {
  "appId": {"type": "string"}, "name": {"type": "string", "maxLength": 100}, "message": ref("Message"), "audience": ref("Audience"), "policy": ref("Policy")}}
S["CampaignPatch"] = {"type": "object", "additionalProperties": False, "properties": {
  "name": {"type": "string"}, "message": ref("Message"), "audience": ref("Audience"), "policy": ref("Policy")}}
STATUS = {"enum": ["draft", "scheduled", "planning", "sending", "paused", "done", "cancelled"]}
S["Campaign"] = {"type": "object", "required": ["id", "appId", "name", "message", "audience", "schedule", "policy", "status", "createdAt", "updatedAt", "runSeq"], "properties": {
  "id": {"type": "string"}, "appId": {"type": "string"}, "name": {"type": "string"}, "message": ref("Message"), "audience": ref("Audience"),
  "schedule": ref("Schedule"), "policy": ref("Policy"), "status": STATUS, "createdAt": {"type": "string", "format": "date-time"},
  "updatedAt": {"type": "string", "format": "date-time"}, "nextRunAt": {"type": "string", "format": "date-time"}, "runSeq": {"type": "integer"},
  "staleThrough": {"type": "integer"}}}
S["CampaignList"] = {"type": "object", "required": ["campaigns"], "properties": {"campaigns": {"type": "array", "items": ref("Campaign")}, "cursor": {"type": "string"}}}
S["Counters"] = {"type": "object", "required": ["planned", "sent", "noGrant", "skipped", "unknown"], "properties": {
  "planned": {"type": "integer"}, "sent": {"type": "integer"}, "failed": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "failures by reason (errcode rule name)"},
  "noGrant": {"type": "integer"}, "skipped": {"type": "integer"}, "unknown": {"type": "integer"}}}
S["Run"] = {"type": "object", "required": ["run", "status", "counters"], "properties": {"run": {"type": "integer"}, "status": {"type": "string"}, "counters": ref("Counters"), "occurrence": {"type": "string", "format": "date-time"}}}
S["Progress"] = {"type": "object", "required": ["id", "status", "runs"], "properties": {"id": {"type": "string"}, "status": STATUS,
  "nextRunAt": {"type": "string", "format": "date-time"}, "current": ref("Run"), "runs": {"type": "array", "items": ref("Run")}}}
S["Delivery"] = {"type": "object", "required": ["openId", "state"], "properties": {"openId": {"type": "string"}, "state": {"type": "string"},
  "outcome": {"enum": ["sent", "failed", "no_grant", "skipped", "unknown"]}, "reason": {"type": "string"}, "errcode": {"type": "integer"},
  "msgId": {"type": "string"}, "updatedAt": {"type": "string", "format": "date-time"}}}
S["DeliveryList"] = {"type": "object", "required": ["deliveries"], "properties": {"deliveries": {"type": "array", "items": ref("Delivery")}, "cursor": {"type": "string"}}}
S["AudiencePage"] = {"type": "object", "required": ["openIds"], "additionalProperties": False, "properties": {"openIds": {"type": "array", "maxItems": 5000, "items": {"type": "string"}}}}
S["AudienceAnswer"] = {"type": "object", "required": ["received", "distinct"], "properties": {"received": {"type": "integer"}, "distinct": {"type": "integer"}}}
S["ScheduleIn"] = {"type": "object", "additionalProperties": False, "description": "exactly one of now, at, cron", "properties": {
  "now": {"type": "boolean"}, "at": {"type": "string", "format": "date-time"}, "cron": {"type": "string"}, "timeZone": {"type": "string"}}}
S["ResumeIn"] = {"type": "object", "additionalProperties": False, "properties": {"catchUp": {"type": "boolean"}}}
S["UserAttrs"] = {"type": "object", "properties": {"openId": {"type": "string"}, "region": {"type": "string"}, "industry": {"type": "string"},
  "tags": {"type": ["array", "null"], "items": {"type": "string"}}, "optedOut": {"type": "boolean"}}}
S["UserImport"] = {"type": "object", "required": ["appId", "users"], "properties": {"appId": {"type": "string"}, "users": {"type": "array", "maxItems": 1000, "items": ref("UserAttrs")}}}
S["ImportAnswer"] = {"type": "object"}
S["ExpiryDay"] = {"type": "object", "required": ["day", "total"], "properties": {"day": {"type": "string", "format": "date"}, "total": {"type": "integer"}, "byKind": {"type": "object", "additionalProperties": {"type": "integer"}}}}
S["Inventory"] = {"type": "object", "required": ["appId", "at", "live", "liveByKind", "expiring24h", "expiring7d", "expiredPerDay"], "properties": {
  "appId": {"type": "string"}, "at": {"type": "string", "format": "date-time"}, "live": {"type": "integer"},
  "liveByKind": {"type": "object", "additionalProperties": {"type": "integer"}}, "expiring24h": {"type": "integer"}, "expiring7d": {"type": "integer"},
  "expiringPerDay": {"type": "array", "items": ref("ExpiryDay"), "description": "live grants by UTC day of expiry, today and the 6 days after"},
  "truncated": {"type": "boolean"}, "expiredPerDay": {"type": "array", "items": ref("ExpiryDay"), "description": "the last 30 UTC days, oldest first"}}}
S["Apps"] = {"type": "object", "required": ["apps"], "properties": {"apps": {"type": "array", "items": {"type": "string"}}}}
S["Valid"] = {"type": "object", "required": ["valid"], "properties": {"valid": {"const": True}}}
S["NextRuns"] = {"type": "object", "required": ["cron", "timeZone", "next"], "properties": {"cron": {"type": "string"}, "timeZone": {"type": "string"},
  "next": {"type": "array", "items": {"type": "string", "format": "date-time"}}}}
S["SessionIn"] = {"type": "object", "required": ["code"], "properties": {"code": {"type": "string"}, "appId": {"type": "string"}}}
S["SessionAnswer"] = {"type": "object", "required": ["token", "expiresAt"], "properties": {"token": {"type": "string"}, "expiresAt": {"type": "string", "format": "date-time"}}}
S["GrantsIn"] = {"type": "object", "required": ["grants"], "properties": {"grants": {"type": "array", "items": {"type": "object", "required": ["type"], "properties": {
  "type": {"enum": ["form", "prepay", "subscribe"]}, "formId": {"type": "string"}, "prepayId": {"type": "string"}, "collectedAt": {"type": "string", "format": "date-time"},
  "key": {"type": "string"}, "results": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}
S["UploadAnswer"] = {"type": "object", "required": ["results", "accepted", "duplicate", "rejected", "ignored"], "properties": {
  "code": {"type": "string"}, "message": {"type": "string"},
  "results": {"type": ["array", "null"], "items": {"type": "object", "required": ["index", "status"], "properties": {"index": {"type": "integer"},
    "status": {"enum": ["accepted", "duplicate", "rejected", "ignored"]}, "reason": {"type": "string"}, "templates": {"type": "object", "additionalProperties": {"type": "string"}}}}},
  "accepted": {"type": "integer"}, "duplicate": {"type": "integer"}, "rejected": {"type": "integer"}, "ignored": {"type": "integer"}}}
S["OpenAPI"] = {"type": "object", "required": ["openapi", "info", "paths"]}

def text(status, desc, ct="text/plain"):
    return {status: {"description": desc, "content": {ct: {"schema": {"type": "string"}}}}}
paths = {}
paths["/v1/session"] = {"post": op("Exchange a wx.login code for a session token", ok("200", "SessionAnswer", "session token"),
  ["400", "401", "413", "422", "429"], body=jbody("SessionIn"), tags=["collect"], security=False)}
paths["/v1/grants"] = {"post": op("Upload harvested grants (formIds, prepay ids, subscribe results)", {**ok("200", "UploadAnswer", "per-item results"),
  "422": {"description": "no item was valid: per-item results with code invalid", "content": {"application/json": {"schema": ref("UploadAnswer")}}}},
  ["400", "401", "413", "429"], body=jbody("GrantsIn"), tags=["collect"], extra={"security": [{"session": []}]})}
paths["/v1/wechat/events"] = {
  "post": op("WeChat's message push (signed; XML or JSON)", text("200", "\"success\", WeChat's acknowledgement"), ["400", "401", "413", "422"], tags=["collect"], security=False,
             params=[q("signature", "SHA1 of token, timestamp, nonce", True), q("timestamp", "", True), q("nonce", "", True), q("appId", "which app's token signs it")]),
  "get": op("WeChat's server URL check: echoes echostr when signed", text("200", "echostr"), ["400", "401"], tags=["collect"], security=False,
            params=[q("signature", "", True), q("timestamp", "", True), q("nonce", "", True), q("echostr", "", True), q("appId", "")])}
A = "/v1/admin"
T = ["admin"]
paths[A + "/campaigns"] = {
  "get": op("List campaigns of one status, newest first", ok("200", "CampaignList", "a page"), ADMIN + ["422"], tags=T,
            params=[q("status", "draft, scheduled, planning, sending, paused, done or cancelled", True), q("limit", "1 to 100 (default 50)"), q("cursor", "from the previous page")]),
  "post": op("Create a draft campaign (Idempotency-Key honoured)", ok("201", "Campaign", "the draft"), ADMIN + ["400", "409", "413", "422"], body=jbody("CampaignIn"), tags=T,
             params=[{"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}, "description": "a retry with the same key and body answers the first answer"}])}
paths[A + "/campaigns:validate"] = {"post": op("Validate a campaign body as create would, storing nothing (the console's live validation)", ok("200", "Valid", "valid"),
  ADMIN + ["400", "413", "422"], body=jbody("CampaignIn"), tags=T)}
paths[A + "/campaigns/{id}"] = {"parameters": [ID],
  "get": op("One campaign", ok("200", "Campaign", "the campaign"), ADMIN + ["404"], tags=T),
  "patch": op("Edit a draft: present fields replace stored ones", ok("200", "Campaign", "the edited draft"), ADMIN + ["400", "404", "409", "413", "422"], body=jbody("CampaignPatch"), tags=T)}
paths[A + "/campaigns/{id}/audience"] = {"parameters": [ID], "post": op("Add one page (up to 5000) of openids to a draft list campaign",
  ok("200", "AudienceAnswer", "received and newly stored"), ADMIN + ["400", "404", "409", "413", "422"], tags=T,
  body={"required": True, "content": {"application/json": {"schema": ref("AudiencePage")}, "text/csv": {"schema": {"type": "string", "description": "openid in the first column; an openid header line is skipped"}}}})}
paths[A + "/campaigns/{id}/schedule"] = {"parameters": [ID], "post": op("Schedule a draft: now, at a time, or on a cron in a time zone",
  ok("200", "Campaign", "the scheduled campaign"), ADMIN + ["400", "404", "409", "413", "422"], body=jbody("ScheduleIn"), tags=T)}
for act, desc in [("cancel", "Cancel a campaign"), ("pause", "Pause a scheduled or sending campaign"), ("resume", "Resume a paused campaign")]:
    o = op(desc, ok("200", "Campaign", "the campaign"), ADMIN + ["404", "409"] + (["400"] if act == "resume" else []), tags=T)
    if act == "resume": o["requestBody"] = {"required": False, "content": {"application/json": {"schema": ref("ResumeIn")}}}
    paths[A + "/campaigns/{id}/" + act] = {"parameters": [ID], "post": o}
paths[A + "/campaigns/{id}/progress"] = {"parameters": [ID], "get": op("Status and every run's counters, the current run apart", ok("200", "Progress", "progress"), ADMIN + ["404"], tags=T)}
paths[A + "/campaigns/{id}/runs/{n}/deliveries"] = {"parameters": [ID, p("n", "run number, from 1")], "get": op("Page through a run's deliveries, optionally of one outcome",
  ok("200", "DeliveryList", "a page"), ADMIN + ["404", "422"], tags=T, params=[q("outcome", "sent, failed, no_grant, skipped or unknown"), q("limit", "1 to 100"), q("cursor", "")])}
paths[A + "/users/{openId}"] = {"parameters": [p("openId", "the user's openid")], "put": op("Replace one user's segment attributes and opt-out",
  ok("200", "UserAttrs", "the stored attributes"), ADMIN + ["400", "413", "422"], body=jbody("UserAttrs"), tags=T, params=[q("appId", "", True)])}
paths[A + "/users:import"] = {"post": op("Import up to 1000 users' attributes", ok("200", "ImportAnswer", "imported"), ADMIN + ["400", "413", "422"], body=jbody("UserImport"), tags=T)}
paths[A + "/inventory"] = {"get": op("An app's grant inventory: live, expiring, expired per day", ok("200", "Inventory", "the inventory"), ADMIN + ["422"], tags=T, params=[q("appId", "", True)])}
paths[A + "/apps"] = {"get": op("The apps this deployment serves (those the token may address)", ok("200", "Apps", "app ids"), ADMIN, tags=T)}
paths[A + "/schedule/next"] = {"get": op("The next occurrences of a cron in a time zone, as the planner computes them", ok("200", "NextRuns", "occurrences in the zone's offset"),
  ADMIN + ["422"], tags=T, params=[q("cron", "five fields", True), q("timeZone", "IANA zone, default UTC"), q("n", "1 to 20 (default 5)")])}
paths["/v1/openapi.json"] = {"get": op("This document", ok("200", "OpenAPI", "OpenAPI 3.1"), [], tags=["meta"], security=False)}
paths["/console"] = {"get": op("The operator console: redirects to /console/", {"302": {"description": "to /console/"}}, [], tags=["console"], security=False)}
paths["/console/{file}"] = {"parameters": [p("file", "an asset; empty for index.html")], "get": op("The console's static files (no token; they hold no data)",
  {**text("200", "the file", "text/html"), "404": {"description": "no such file", "content": {"text/plain": {"schema": {"type": "string"}}}}}, [], tags=["console"], security=False,
  extra={"x-template-path": "/console/{proxy+}"})}

doc = {"openapi": "3.1.0",
  "info": {"title": "minipush", "version": "1", "description": "Collect API (mini-programs) and operator API (/v1/admin/, bearer operator token) of minipush. Every error answer is {code, message}; API Gateway's own (404 for no route, 413 over 10 MB) is {message}. Every route may also answer 429 when the stage throttles and 503 (code unavailable, with Retry-After) when storage is busy: see x-any-route."},
  "servers": [{"url": "/"}],
  "security": [{"operator": []}],
  "x-any-route": {"429": "API Gateway stage throttling ({message})", "503": "storage throttled after the SDK's retries (code unavailable, Retry-After)", "500": "internal error (code internal)"},
  "paths": paths,
  "components": {"schemas": S, "securitySchemes": {
    "operator": {"type": "http", "scheme": "bearer", "description": "the operator token (OPERATOR_SECRET_ARN)"},
    "session": {"type": "http", "scheme": "bearer", "description": "a session token from POST /v1/session"}}}}
print(json.dumps(doc, indent=1, ensure_ascii=False))
