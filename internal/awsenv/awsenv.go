// Package awsenv builds AWS clients from a function's environment. It reads everything
// through a getenv function rather than the process environment, so the local runner can
// build several functions in one process, each with its own environment, and point them
// at the local stack (AWS_ENDPOINT_URL_<SERVICE>, static credentials) without touching
// os.Environ.
package awsenv

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Clients are the AWS clients a function may use. They are built once at init and
// reused by warm invocations.
type Clients struct {
	Config         aws.Config
	DynamoDB       *dynamodb.Client
	SQS            *sqs.Client
	SecretsManager *secretsmanager.Client
}

// Load builds the clients. In Lambda getenv is os.Getenv and the SDK's default chain
// applies; locally, AWS_REGION, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and
// AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL_SQS from getenv win.
func Load(ctx context.Context, getenv func(string) string) (Clients, error) {
	var opts []func(*config.LoadOptions) error
	if r := getenv("AWS_REGION"); r != "" {
		opts = append(opts, config.WithRegion(r))
	}
	if id, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(id, secret, getenv("AWS_SESSION_TOKEN"))))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return Clients{}, fmt.Errorf("awsenv: load config: %w", err)
	}
	endpoint := func(service string) *string {
		if u := getenv("AWS_ENDPOINT_URL_" + service); u != "" {
			return aws.String(u)
		}
		return nil
	}
	return Clients{
		Config: cfg,
		DynamoDB: dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
			if u := endpoint("DYNAMODB"); u != nil {
				o.BaseEndpoint = u
			}
		}),
		SQS: sqs.NewFromConfig(cfg, func(o *sqs.Options) {
			if u := endpoint("SQS"); u != nil {
				o.BaseEndpoint = u
			}
		}),
		SecretsManager: secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) {
			if u := endpoint("SECRETS_MANAGER"); u != nil {
				o.BaseEndpoint = u
			}
		}),
	}, nil
}
