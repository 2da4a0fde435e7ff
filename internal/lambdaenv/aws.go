package lambdaenv

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush/internal/metrics"
)

// clients are the AWS clients of one function, built once at init and reused by warm
// invocations.
type clients struct {
	config         aws.Config
	dynamoDB       *dynamodb.Client
	sqs            *sqs.Client
	secretsManager *secretsmanager.Client
	// endpoint returns the AWS_ENDPOINT_URL_<service> override read through getenv, or
	// nil: the SDK's own loader reads these from the process environment, which the
	// local runner does not set, since it runs several functions in one process.
	endpoint func(service string) *string
}

// loadClients builds the clients. In Lambda getenv is os.Getenv and the SDK's default
// chain applies; locally, AWS_REGION, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and the
// AWS_ENDPOINT_URL_<SERVICE> variables from getenv point them at the local stack. obs
// adds a dev observer's middleware (WithObserver); in Lambda it is empty.
func loadClients(ctx context.Context, getenv func(string) string, obs Observer) (*clients, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if r := getenv("AWS_REGION"); r != "" {
		opts = append(opts, awsconfig.WithRegion(r))
	}
	if id, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(id, secret, getenv("AWS_SESSION_TOKEN"))))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS config: %w", err)
	}
	// Throttled attempts the SDK retries become metrics (the invocation's Throttles).
	cfg.APIOptions = append(cfg.APIOptions, metrics.SDKThrottles)
	cfg.APIOptions = append(cfg.APIOptions, obs.APIOptions...)
	c := &clients{config: cfg, endpoint: func(service string) *string {
		if u := getenv("AWS_ENDPOINT_URL_" + service); u != "" {
			return aws.String(u)
		}
		return nil
	}}
	c.dynamoDB = dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = c.endpoint("DYNAMODB") })
	c.sqs = sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = c.endpoint("SQS") })
	c.secretsManager = secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) {
		o.BaseEndpoint = c.endpoint("SECRETS_MANAGER")
	})
	return c, nil
}

// streams is the DynamoDB Streams client (expire's replay). The local stack serves
// the streams API on its own endpoint.
func (c *clients) streams() *dynamodbstreams.Client {
	return dynamodbstreams.NewFromConfig(c.config, func(o *dynamodbstreams.Options) {
		o.BaseEndpoint = c.endpoint("DYNAMODB_STREAMS")
	})
}

// emulated reports whether DynamoDB is a local stand-in (its endpoint overridden).
func (c *clients) emulated() bool { return c.endpoint("DYNAMODB") != nil }
