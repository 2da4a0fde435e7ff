// Package config reads a function's configuration from its environment (set by
// template.yaml) and its secrets from Secrets Manager, or from the local stand-in.
package config

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // zones load from the binary: Lambda's provided.al2023 has no zoneinfo

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"minipush"
)

// Tables are the DynamoDB table names.
type Tables struct {
	Grants, Users, Campaigns, Audience, Deliveries, State string
}

// Config is everything a function reads from its environment. Fields a function does not
// use may be empty; each function checks what it needs with Require.
type Config struct {
	Tables             Tables
	SendQueueURL       string
	WeChatBaseURL      string
	TokenEndpoint      string // stable or legacy
	WeChatSecretARN    string
	SessionSecretARN   string
	OperatorSecretARN  string
	Retention          time.Duration // deliveries and finished runs
	SubscribeRetention time.Duration
	MaxLiveGrants      int
	SendRatePerSecond  float64

	env map[string]string
}

// FromEnv reads the configuration through getenv (os.Getenv in a function).
func FromEnv(getenv func(string) string) (Config, error) {
	c := Config{env: map[string]string{}}
	get := func(k string) string {
		v := getenv(k)
		c.env[k] = v
		return v
	}
	c.Tables = Tables{
		Grants: get("GRANTS_TABLE"), Users: get("USERS_TABLE"), Campaigns: get("CAMPAIGNS_TABLE"),
		Audience: get("AUDIENCE_TABLE"), Deliveries: get("DELIVERIES_TABLE"), State: get("STATE_TABLE"),
	}
	c.SendQueueURL = get("SEND_QUEUE_URL")
	c.WeChatBaseURL = orDefault(get("WECHAT_BASE_URL"), "https://api.weixin.qq.com")
	c.TokenEndpoint = orDefault(get("TOKEN_ENDPOINT"), "stable")
	if c.TokenEndpoint != "stable" && c.TokenEndpoint != "legacy" {
		return c, fmt.Errorf("config: TOKEN_ENDPOINT %q: want stable or legacy", c.TokenEndpoint)
	}
	c.WeChatSecretARN = get("WECHAT_SECRET_ARN")
	c.SessionSecretARN = get("SESSION_SECRET_ARN")
	c.OperatorSecretARN = get("OPERATOR_SECRET_ARN")
	var errs []error
	positive := func(k string, def int) int {
		n, err := positiveInt(k, get(k), def)
		if err != nil {
			errs = append(errs, err)
		}
		return n
	}
	day := 24 * time.Hour
	c.Retention = time.Duration(positive("RETENTION_DAYS", 30)) * day
	c.SubscribeRetention = time.Duration(positive("SUBSCRIBE_RETENTION_DAYS", int(minipush.DefaultSubscribeRetention/day))) * day
	c.MaxLiveGrants = positive("MAX_LIVE_GRANTS", minipush.DefaultMaxLiveGrants)
	if v := get("SEND_RATE_PER_SECOND"); v != "" {
		f, perr := strconv.ParseFloat(v, 64)
		if perr != nil || f < 0 {
			errs = append(errs, fmt.Errorf("config: SEND_RATE_PER_SECOND %q: want a number >= 0", v))
		}
		c.SendRatePerSecond = f
	}
	return c, errors.Join(errs...)
}

// Require fails naming every listed variable that is empty, so a miswired function stops
// at init with a clear message instead of failing on its first request.
func (c Config) Require(keys ...string) error {
	var missing []string
	for _, k := range keys {
		if c.env[k] == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("config: missing environment: %s", strings.Join(missing, ", "))
	}
	return nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func positiveInt(k, v string, def int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return def, fmt.Errorf("config: %s %q: want a positive integer", k, v)
	}
	return n, nil
}

// App is one mini-program's credentials.
type App struct {
	AppID      string `json:"appId"`
	AppSecret  string `json:"appSecret"`
	EventToken string `json:"eventToken,omitempty"` // the message-push token, for signature checks
	// SubscribeSource picks where subscribe accepts are recorded from: "client" (the
	// mini-program's upload), "push" (WeChat's signed subscribe_msg_popup_event; needs
	// EventToken) or "" for both. One accept reported by both sources cannot be
	// recognised as one (they share no id), so it would be stored twice: an app that
	// receives the push should pick one.
	SubscribeSource string `json:"subscribeSource,omitempty"`
	// EncodingAESKey is the message-push EncodingAESKey of the mini-program's console (43
	// base64 characters, 32 bytes once decoded). With it, pushes must come in safe or
	// compatible mode (encrypted, msg_signature over the ciphertext) and plaintext
	// pushes are refused: a plaintext push's signature does not cover its body.
	EncodingAESKey string `json:"encodingAESKey,omitempty"`
	// TimeZone is the IANA zone of the app's users (default DefaultAppTimeZone): the
	// day of the one-push-per-day cap is the recipient's day, so it is computed in this
	// one zone for every campaign of the app, whatever zone a campaign's schedule names.
	TimeZone string `json:"timeZone,omitempty"`
}

// DefaultAppTimeZone is an App's TimeZone when the secret names none: mini-program
// users are mostly in mainland China.
const DefaultAppTimeZone = "Asia/Shanghai"

// Location loads the app's TimeZone (ParseApps has checked that it loads), falling
// back to UTC only if it somehow does not.
func (a App) Location() *time.Location {
	name := a.TimeZone
	if name == "" {
		name = DefaultAppTimeZone
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return time.UTC
	}
	return loc
}

// Subscribe sources of an App.
const (
	SourceClient = "client"
	SourcePush   = "push"
)

// AcceptsFrom reports whether the app records subscribe accepts reported by source.
func (a App) AcceptsFrom(source string) bool {
	return a.SubscribeSource == "" || a.SubscribeSource == source
}

// AESKey decodes EncodingAESKey: 43 base64 characters (WeChat drops the trailing "="),
// 32 bytes, the AES-256 key of safe-mode pushes. The console picks the 43 characters at
// random from [A-Za-z0-9], so the last one's unused bits are not zero and decoding is
// lenient about them, as WeChat's own. The error never quotes the key.
func (a App) AESKey() ([]byte, error) {
	if len(a.EncodingAESKey) != 43 {
		return nil, fmt.Errorf("config: wechat secret app %s: encodingAESKey is %d characters, want 43", a.AppID, len(a.EncodingAESKey))
	}
	key, err := base64.StdEncoding.DecodeString(a.EncodingAESKey + "=")
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("config: wechat secret app %s: encodingAESKey is not 43 base64 characters of a 32-byte key", a.AppID)
	}
	return key, nil
}

// String hides the secret so an App can never be logged by accident.
func (a App) String() string { return "App{" + a.AppID + "}" }

// LogValue hides the secret from slog too.
func (a App) LogValue() slog.Value { return slog.StringValue(a.AppID) }

// Apps is the content of the WeChat secret.
type Apps struct {
	Apps []App `json:"apps"`
}

// Find returns the app with the given id.
func (a Apps) Find(appID string) (App, bool) {
	for _, app := range a.Apps {
		if app.AppID == appID {
			return app, true
		}
	}
	return App{}, false
}

// ParseApps parses and checks the WeChat secret's JSON.
func ParseApps(s string) (Apps, error) {
	var a Apps
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		return a, fmt.Errorf("config: wechat secret is not {\"apps\":[...]} JSON")
	}
	if len(a.Apps) == 0 {
		return a, fmt.Errorf("config: wechat secret lists no apps")
	}
	seen := map[string]bool{}
	for i, app := range a.Apps {
		if app.AppID == "" || app.AppSecret == "" {
			return a, fmt.Errorf("config: wechat secret app %d lacks appId or appSecret", i)
		}
		switch app.SubscribeSource {
		case "", SourceClient:
		case SourcePush:
			if app.EventToken == "" {
				return a, fmt.Errorf("config: wechat secret app %s takes subscribe accepts from the push but has no eventToken to verify it", app.AppID)
			}
		default:
			return a, fmt.Errorf("config: wechat secret app %s: subscribeSource %q, want %q, %q or absent (both)", app.AppID, app.SubscribeSource, SourceClient, SourcePush)
		}
		if app.EncodingAESKey != "" {
			if app.EventToken == "" {
				return a, fmt.Errorf("config: wechat secret app %s has an encodingAESKey but no eventToken to verify pushes", app.AppID)
			}
			if _, err := app.AESKey(); err != nil {
				return a, err
			}
		}
		if app.TimeZone != "" {
			// "Local" would be the zone of whatever machine runs the code (UTC on Lambda).
			if _, err := time.LoadLocation(app.TimeZone); err != nil || app.TimeZone == "Local" {
				return a, fmt.Errorf("config: wechat secret app %s: timeZone %q is not an IANA zone such as %q", app.AppID, app.TimeZone, DefaultAppTimeZone)
			}
		}
		if seen[app.AppID] {
			return a, fmt.Errorf("config: wechat secret lists app %s twice", app.AppID)
		}
		seen[app.AppID] = true
	}
	return a, nil
}

// SecretsManagerAPI is the one Secrets Manager call minipush makes.
type SecretsManagerAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// Secrets reads secret strings by ARN. ARNs of the form local:Name (what the local stack
// resolves secrets to) are served from Local instead of Secrets Manager.
type Secrets struct {
	Client SecretsManagerAPI
	Local  map[string]string
}

// Get returns the secret string behind arn.
func (s Secrets) Get(ctx context.Context, arn string) (string, error) {
	if name, ok := strings.CutPrefix(arn, "local:"); ok {
		v, ok := s.Local[name]
		if !ok || v == "" {
			return "", fmt.Errorf("config: local secret %s is not set", name)
		}
		return v, nil
	}
	if s.Client == nil {
		return "", fmt.Errorf("config: no Secrets Manager client for %s", arn)
	}
	out, err := s.Client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return "", fmt.Errorf("config: get secret %s: %w", arn, err)
	}
	return aws.ToString(out.SecretString), nil
}

// LocalSecretsEnv is the variable through which a function binary run locally (under
// the runtime interface emulator) receives its local: secrets, as a JSON object.
const LocalSecretsEnv = "MINIPUSH_LOCAL_SECRETS"

// ParseLocalSecrets parses the LocalSecretsEnv value; empty means none.
func ParseLocalSecrets(v string) (map[string]string, error) {
	if v == "" {
		return nil, nil
	}
	m := map[string]string{}
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		return nil, fmt.Errorf("config: %s is not a JSON object of strings", LocalSecretsEnv)
	}
	return m, nil
}
