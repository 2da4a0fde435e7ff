package localrun

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Receipts configures the sandbox's subscribe_msg_sent_event pushes for a local run.
type Receipts struct {
	Format   string  // "xml" or "json"; "off" sends none
	FailRate float64 // share of receipts reporting an asynchronous failure (ErrorCode 10005)
	Batch    int     // List items one push may carry
}

// EnableReceipts asks the sandbox at sandboxURL (through its control API, so an
// external sandbox works too) to push the app's sent events to the system's message
// push route at apiURL, signed with the app's event token, so delivery receipts flow
// in make run and make demo as they would from WeChat.
func (a App) EnableReceipts(ctx context.Context, sandboxURL, apiURL string, rc Receipts) error {
	if rc.Format == "off" {
		return nil
	}
	body, _ := json.Marshal(map[string]any{
		"appid": a.AppID, "url": apiURL + "/v1/wechat/events", "token": a.EventToken,
		"format": rc.Format, "fail_rate": rc.FailRate, "batch": rc.Batch, "delay_ms": 200,
	})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sandboxURL+"/_sandbox/receipts", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("localrun: receipts: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("localrun: receipts: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("localrun: receipts: sandbox answered %s: %s", resp.Status, b)
	}
	return nil
}
