package admin

import (
	_ "embed"
	"net/http"

	"github.com/aws/aws-lambda-go/events"
)

// OpenAPI is the OpenAPI 3.1 description of the collect and operator APIs, served at
// GET /v1/openapi.json. It is checked against template.yaml's routes and this router
// (TestOpenAPIRoutes) and against the running system's answers (internal/dev/apispec,
// used by the bad-input suite), so it cannot silently fall behind the code.
//
//go:embed openapi.json
var OpenAPI []byte

func openAPI(method string) events.APIGatewayV2HTTPResponse {
	if method != http.MethodGet && method != http.MethodHead {
		return events.APIGatewayV2HTTPResponse{StatusCode: http.StatusMethodNotAllowed,
			Headers: map[string]string{"Allow": "GET, HEAD", "Content-Type": "application/json"},
			Body:    `{"code":"method_not_allowed","message":"the API description is read with GET"}`}
	}
	resp := events.APIGatewayV2HTTPResponse{StatusCode: http.StatusOK,
		Headers: map[string]string{"Content-Type": "application/json", "Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}}
	if method == http.MethodGet {
		resp.Body = string(OpenAPI)
	}
	return resp
}
