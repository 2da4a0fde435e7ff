package localrun

import (
	"encoding/json"

	"minipush/internal/dev/sandbox"
)

// App is a mini-program the local system serves, known to both the sandbox and the
// WeChat secret.
type App struct {
	AppID, Secret, EventToken string
	// NoReceipts turns the app's receipts off (minipush.App.Receipts): send then records
	// each sent message in its invocation's sent log instead of a final write of its own,
	// the path most apps take (make chaos runs it).
	NoReceipts bool
}

// DemoApp is the mini-program make run and make demo use.
func DemoApp() App {
	return App{AppID: "wx0000000000demo", Secret: "demosecret", EventToken: "demoeventtoken"}
}

// Demo templates registered in the sandbox. DemoStatusTemplate has an enum keyword
// (phrase2: 已发货 or 未发货), so the template registry has a list to check.
const (
	DemoSubscribeTemplate = "DEMO_CHECKIN_REMINDER"
	DemoFormTemplate      = "DEMO_ORDER_NOTICE"
	DemoStatusTemplate    = "DEMO_ORDER_STATUS"
)

// SandboxConfig registers the app and its demo templates in a sandbox.
func (a App) SandboxConfig() sandbox.Config {
	return sandbox.Config{
		Apps: []sandbox.App{{AppID: a.AppID, Secret: a.Secret}},
		Templates: []sandbox.TemplateConfig{
			{AppID: a.AppID, TemplateID: DemoSubscribeTemplate, Kind: "subscribe",
				Fields: map[string]string{"thing1": "thing", "time2": "time"},
				Title:  "签到提醒", Names: map[string]string{"thing1": "活动名称", "time2": "签到时间"}},
			{AppID: a.AppID, TemplateID: DemoStatusTemplate, Kind: "subscribe",
				Fields: map[string]string{"thing1": "thing", "phrase2": "phrase"},
				Title:  "订单状态通知", Names: map[string]string{"thing1": "商品名称", "phrase2": "订单状态"},
				Enums: map[string][]string{"phrase2": {"已发货", "未发货"}}},
			{AppID: a.AppID, TemplateID: DemoFormTemplate, Kind: "form",
				Keywords: []string{"keyword1", "keyword2"}},
		},
	}
}

// SecretJSON is the app's entry in the WeChat secret (what Secrets Manager holds in AWS).
// Receipts are on unless NoReceipts: make run and make demo show sent messages turning
// delivered.
func (a App) SecretJSON() string {
	b, _ := json.Marshal(map[string]any{"apps": []map[string]any{{
		"appId": a.AppID, "appSecret": a.Secret, "eventToken": a.EventToken, "receipts": !a.NoReceipts,
	}}})
	return string(b)
}
