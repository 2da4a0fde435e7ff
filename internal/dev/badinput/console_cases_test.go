package badinput_test

import (
	"strings"

	"minipush"
)

// The admin function's routes that need no token: the console's files and the API
// description. They hold no data, so a forged credential changes nothing (200, the same
// public file) and bad paths are refused without reading anything outside the assets.
const (
	consoleRoute      = "GET /console"
	consoleFilesRoute = "GET /console/{proxy+}"
	openAPIRoute      = "GET /v1/openapi.json"
)

// consoleCases are the bad requests to the public routes.
func (fx *fixture) consoleCases() []tcase {
	over := strings.Repeat("x", gatewayLimit)
	garbage := map[string]string{"Authorization": "Bearer not-a-token"}
	get := func(target string, h map[string]string) request {
		return request{method: "GET", target: target, header: h}
	}
	const page, doc = "<!doctype html>", `"openapi": "3.1.0"`
	var cs []tcase
	for _, r := range []struct{ route, target, says string }{
		{consoleRoute, "/console", page}, // the client follows the redirect to /console/
		{consoleFilesRoute, "/console/app.js", "sessionStorage"},
		{openAPIRoute, "/v1/openapi.json", doc},
	} {
		cs = append(cs,
			tcase{route: r.route, kind: forged, name: "PublicIgnoresGarbageToken" + r.target, req: get(r.target, garbage), want: 200, says: r.says},
			tcase{route: r.route, kind: replayed, name: "PublicReplay" + r.target, req: get(r.target, nil), want: 200, says: r.says},
			tcase{route: r.route, kind: oversized, name: "PublicOverGatewayLimit" + r.target,
				req:  request{method: "GET", target: r.target, header: map[string]string{"Content-Type": "application/json"}, body: []byte(`{"x":"` + over + `"}`)},
				want: 413, says: "Request Entity Too Large"},
		)
	}
	return append(cs,
		tcase{route: consoleFilesRoute, kind: malformed, name: "ConsolePathTraversal", req: get("/console/..%2f..%2fgo.mod", nil), want: 404, code: minipush.ENOTFOUND, says: "no console file"},
		tcase{route: consoleFilesRoute, kind: wrongType, name: "ConsoleNoSuchFile", req: get("/console/admin.go", nil), want: 404, code: minipush.ENOTFOUND, says: "no console file"},
		// A query the route does not take is ignored: the same public answer.
		tcase{route: consoleRoute, kind: malformed, name: "ConsoleJunkQuery", req: get("/console?%zz=%", nil), want: 200, says: page},
		tcase{route: consoleRoute, kind: wrongType, name: "ConsoleTypedQuery", req: get("/console?page=-1", nil), want: 200, says: page},
		tcase{route: openAPIRoute, kind: malformed, name: "OpenAPIJunkQuery", req: get("/v1/openapi.json?%zz=%", nil), want: 200, says: doc},
		tcase{route: openAPIRoute, kind: wrongType, name: "OpenAPIFormatYAMLIgnored", req: get("/v1/openapi.json?format=yaml", nil), want: 200, says: doc},
	)
}
