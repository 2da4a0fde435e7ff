package badinput_test

import (
	"fmt"
	"strings"

	"minipush"
	"minipush/internal/dev/localrun"
)

// templateCases are the template registry's bad input (internal/admin/templates.go):
// an app the deployment does not serve, a template id that cannot be one, previews with
// broken, mistyped or oversized data. The fixture never syncs, so every case leaves
// the registry (state-table items tpl#<appId>) empty, which the snapshot checks.
func (fx *fixture) templateCases() []tcase {
	apps := "/v1/admin/apps/"
	previewURL := apps + demo.AppID + "/templates/" + localrun.DemoStatusTemplate + "/preview"
	var many []string
	for i := 1; i <= 31; i++ {
		many = append(many, fmt.Sprintf(`"thing%d":{"value":"x"}`, i))
	}
	const (
		sync    = "POST apps/{appId}/templates:sync"
		list    = "GET apps/{appId}/templates"
		get     = "GET apps/{appId}/templates/{priTmplId}"
		preview = "POST apps/{appId}/templates/{priTmplId}/preview"
	)
	return []tcase{
		{route: adminRoute, op: sync, kind: forged, name: "TemplateSyncUnservedApp", req: fx.admin("POST", apps+"wx0000000000typo/templates:sync", ""), want: 404, code: minipush.ENOTFOUND, says: "no app"},
		{route: adminRoute, op: sync, kind: wrongType, name: "TemplateSyncWrongMethod", req: fx.admin("PUT", apps+demo.AppID+"/templates:sync", ""), want: 405, code: "method_not_allowed", says: "PUT"},
		{route: adminRoute, op: list, kind: forged, name: "TemplatesOfUnservedApp", req: fx.admin("GET", apps+"wx0000000000typo/templates", ""), want: 404, code: minipush.ENOTFOUND, says: "no app"},
		{route: adminRoute, op: get, kind: oversized, name: "TemplateIDTooLong", req: fx.admin("GET", apps+demo.AppID+"/templates/"+strings.Repeat("T", 129), ""), want: 404, code: minipush.ENOTFOUND, says: "no template"},
		{route: adminRoute, op: get, kind: wrongType, name: "TemplateIDNotAnID", req: fx.admin("GET", apps+demo.AppID+"/templates/a.b", ""), want: 404, code: minipush.ENOTFOUND, says: "no template"},
		{route: adminRoute, op: preview, kind: malformed, name: "TemplatePreviewTruncated", req: fx.admin("POST", previewURL, `{"data":{"thing1":`), want: 400, code: minipush.EMALFORMED, says: "JSON"},
		{route: adminRoute, op: preview, kind: wrongType, name: "TemplatePreviewDataString", req: fx.admin("POST", previewURL, `{"data":"thing1=x"}`), want: 400, code: minipush.EMALFORMED, says: "data"},
		{route: adminRoute, op: preview, kind: oversized, name: "TemplatePreviewTooManyFields", req: fx.admin("POST", previewURL, `{"data":{`+strings.Join(many, ",")+`}}`), want: 422, code: minipush.EINVALID, says: "more than 30"},
		// Never synced: the registry has no template to render.
		{route: adminRoute, op: preview, kind: wrongType, name: "TemplatePreviewUnsynced", req: fx.admin("POST", previewURL, `{"data":{}}`), want: 404, code: minipush.ENOTFOUND, says: "no template"},
	}
}

// templateTargets are the registry's operations with a request each, for the generated
// no-credential cases.
func (fx *fixture) templateTargets() map[string]request {
	apps := "/v1/admin/apps/" + demo.AppID
	return map[string]request{
		"POST apps/{appId}/templates:sync":                fx.admin("POST", apps+"/templates:sync", ""),
		"GET apps/{appId}/templates":                      fx.admin("GET", apps+"/templates", ""),
		"GET apps/{appId}/templates/{priTmplId}":          fx.admin("GET", apps+"/templates/"+localrun.DemoStatusTemplate, ""),
		"POST apps/{appId}/templates/{priTmplId}/preview": fx.admin("POST", apps+"/templates/"+localrun.DemoStatusTemplate+"/preview", `{"data":{}}`),
	}
}
