package samtemplate

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"minipush/internal/metrics"
)

// placeholders resolves every reference to a recognisable stand-in, so a dashboard body
// can be read without a stack.
type placeholders struct{}

func (placeholders) Ref(n string) (string, error)        { return "ref-" + n, nil }
func (placeholders) GetAtt(r, a string) (string, error)  { return "att-" + r + "-" + a, nil }
func (placeholders) Condition(name string) (bool, error) { return true, nil }

// dashboardMetric is one metric a widget draws: namespace, name and dimensions.
type dashboardMetric struct {
	widget, namespace, name string
	dims                    []string // dimension names in order
	values                  map[string]string
}

// TestDashboardMetrics reads the dashboard of template.yaml and checks that every
// minipush metric it draws is one the functions emit (metrics.Units), with a dimension
// set they publish ([Function] or [Function, D] for one of the metric's dimensions),
// for a function of this stack; SEARCH expressions are held to the same rules.
func TestDashboardMetrics(t *testing.T) {
	t.Parallel()
	tpl, err := ReadFile(repoTemplate(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(tpl.Dashboards) == 0 {
		t.Fatal("template.yaml has no AWS::CloudWatch::Dashboard")
	}
	for id, d := range tpl.Dashboards {
		body, err := d.DashboardBody.Resolve(placeholders{})
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		found, err := dashboardMetrics([]byte(body))
		if err != nil {
			t.Fatalf("%s: DashboardBody: %v", id, err)
		}
		var own int
		for _, m := range found {
			if m.namespace != metrics.Namespace {
				continue
			}
			own++
			checkDashboardMetric(t, tpl, m)
		}
		if own == 0 {
			t.Errorf("%s draws no minipush metric", id)
		}
	}
}

func checkDashboardMetric(t *testing.T, tpl *Template, m dashboardMetric) {
	t.Helper()
	if _, ok := metrics.Units[m.name]; !ok {
		t.Errorf("widget %q: metric %s is not one the functions emit", m.widget, m.name)
		return
	}
	if len(m.dims) == 0 || m.dims[0] != metrics.FunctionDimension {
		t.Errorf("widget %q: %s %v: every minipush metric is published under Function first", m.widget, m.name, m.dims)
		return
	}
	if len(m.dims) > 2 || (len(m.dims) == 2 && !slices.Contains(metrics.Dimensions[m.name], m.dims[1])) {
		t.Errorf("widget %q: %s by %v: published only by [Function] and [Function, one of %v]", m.widget, m.name, m.dims, metrics.Dimensions[m.name])
	}
	fn, ok := strings.CutPrefix(m.values[metrics.FunctionDimension], "ref-")
	if f, isFn := tpl.Functions[fn]; !ok || !isFn || f == nil {
		t.Errorf("widget %q: %s for Function %q, not a function of this template", m.widget, m.name, m.values[metrics.FunctionDimension])
	}
}

var (
	searchSchema = regexp.MustCompile(`\{([^}]*)\}`)
	searchTerm   = regexp.MustCompile(`(\w+)="([^"]*)"`)
)

// dashboardMetrics lists the metrics of every metric widget: the array form
// [namespace, name, dim, value, ..., {options}] and SEARCH('{namespace,dims...} ...').
func dashboardMetrics(body []byte) ([]dashboardMetric, error) {
	var dash struct {
		Widgets []struct {
			Type       string `json:"type"`
			Properties struct {
				Title   string              `json:"title"`
				Metrics [][]json.RawMessage `json:"metrics"`
			} `json:"properties"`
		} `json:"widgets"`
	}
	if err := json.Unmarshal(body, &dash); err != nil {
		return nil, err
	}
	var out []dashboardMetric
	for _, w := range dash.Widgets {
		for _, row := range w.Properties.Metrics {
			var strs []string
			for _, raw := range row {
				var s string
				if json.Unmarshal(raw, &s) == nil {
					strs = append(strs, s)
					continue
				}
				var opt struct {
					Expression string `json:"expression"`
				}
				if err := json.Unmarshal(raw, &opt); err != nil {
					return nil, err
				}
				if opt.Expression != "" {
					m, err := searchMetric(w.Properties.Title, opt.Expression)
					if err != nil {
						return nil, err
					}
					out = append(out, m)
				}
			}
			if len(strs) == 0 {
				continue
			}
			if len(strs) < 2 || len(strs)%2 != 0 {
				return nil, &json.UnsupportedValueError{Str: strings.Join(strs, ",")}
			}
			m := dashboardMetric{widget: w.Properties.Title, namespace: strs[0], name: strs[1], values: map[string]string{}}
			for i := 2; i < len(strs); i += 2 {
				m.dims = append(m.dims, strs[i])
				m.values[strs[i]] = strs[i+1]
			}
			out = append(out, m)
		}
	}
	return out, nil
}

func searchMetric(widget, expr string) (dashboardMetric, error) {
	schema := searchSchema.FindStringSubmatch(expr)
	if schema == nil {
		return dashboardMetric{}, &json.UnsupportedValueError{Str: expr}
	}
	parts := strings.Split(schema[1], ",")
	m := dashboardMetric{widget: widget, namespace: parts[0], dims: parts[1:], values: map[string]string{}}
	for _, kv := range searchTerm.FindAllStringSubmatch(strings.ReplaceAll(expr, `\"`, `"`), -1) {
		if kv[1] == "MetricName" {
			m.name = kv[2]
		} else {
			m.values[kv[1]] = kv[2]
		}
	}
	return m, nil
}
