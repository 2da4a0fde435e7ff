package lambdaenv

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"minipush"
)

// LocalSecretsEnv is the variable through which a function run locally (by the local
// runner, or its real bootstrap under the runtime interface emulator) receives the
// values of its local: secrets, as a JSON object of name to value. The local stack
// resolves the template's secrets to ARNs of the form local:Name; there is no Secrets
// Manager stand-in.
const LocalSecretsEnv = "MINIPUSH_LOCAL_SECRETS"

// secretsAPI is the one Secrets Manager call minipush makes.
type secretsAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// secrets is the one secrets loader: every secret a function holds is read through it,
// once, at init.
type secrets struct {
	client secretsAPI
	local  map[string]string
	// observe, when set, is told every secret read (Observer.Secret).
	observe func(arn string)
}

func newSecrets(client secretsAPI, getenv func(string) string) (secrets, error) {
	s := secrets{client: client}
	if v := getenv(LocalSecretsEnv); v != "" {
		if err := json.Unmarshal([]byte(v), &s.local); err != nil {
			return s, fmt.Errorf("%s is not a JSON object of strings", LocalSecretsEnv)
		}
	}
	return s, nil
}

// get returns the secret string behind arn, which names the variable it came from in
// errors. The value never appears in an error.
func (s secrets) get(ctx context.Context, variable, arn string) (string, error) {
	if s.observe != nil {
		s.observe(arn)
	}
	if name, ok := strings.CutPrefix(arn, "local:"); ok {
		v := s.local[name]
		if v == "" {
			return "", fmt.Errorf("%s: local secret %s is not set", variable, name)
		}
		return v, nil
	}
	out, err := s.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return "", fmt.Errorf("%s: get secret %s: %w", variable, arn, err)
	}
	return aws.ToString(out.SecretString), nil
}

// apps reads and checks the WeChat secret (WECHAT_SECRET_ARN).
func (s secrets) apps(ctx context.Context, c *config) (minipush.Apps, error) {
	raw, err := s.get(ctx, "WECHAT_SECRET_ARN", c.weChatSecretARN)
	if err != nil {
		return minipush.Apps{}, err
	}
	apps, err := minipush.ParseApps(raw)
	if err != nil {
		return minipush.Apps{}, fmt.Errorf("WECHAT_SECRET_ARN: %w", err)
	}
	return apps, nil
}
