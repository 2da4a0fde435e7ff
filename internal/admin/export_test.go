package admin

import "strings"

// ScopeRuleFor exposes the scope decision of a route (method and path after
// /v1/admin/) to TestScopeIsolation: the rule's name and whether a rule decides it.
func ScopeRuleFor(method, path string) (string, bool) {
	rule, ok := scopeRuleFor(method, strings.Split(path, "/"))
	return string(rule), ok
}
