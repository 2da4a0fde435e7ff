package metrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// EMF limits (specification, MetricDirective and target members).
const (
	// MaxMetrics is the most metrics one directive may declare.
	MaxMetrics = 100
	// MaxValues is the most values one metric may carry in a line.
	MaxValues = 100
	// MaxDimensions is the most dimension keys of one dimension set.
	MaxDimensions = 30
)

// encode turns one group into EMF lines (each ending in a newline): counts on the first
// line, values in chunks of MaxValues over as many lines as they need, at most
// MaxMetrics metrics a line.
func encode(function string, ts int64, g *group) [][]byte {
	type entry struct {
		name string
		v    any // float64 or []float64
	}
	var rounds [][]entry
	put := func(i int, e entry) {
		for len(rounds) <= i {
			rounds = append(rounds, nil)
		}
		rounds[i] = append(rounds[i], e)
	}
	for _, name := range g.order {
		if c, ok := g.counts[name]; ok {
			put(0, entry{name, c})
		}
		for i, chunk := 0, g.values[name]; len(chunk) > 0; i++ {
			n := min(len(chunk), MaxValues)
			put(i, entry{name, chunk[:n:n]})
			chunk = chunk[n:]
		}
	}
	sets := [][]string{{FunctionDimension}}
	for _, d := range g.dims {
		sets = append(sets, []string{FunctionDimension, d.Name})
	}
	var lines [][]byte
	for _, round := range rounds {
		for len(round) > 0 {
			n := min(len(round), MaxMetrics)
			part := round[:n]
			round = round[n:]
			doc := map[string]any{FunctionDimension: function}
			for _, d := range g.dims {
				doc[d.Name] = d.Value
			}
			defs := make([]metricDef, 0, len(part))
			for _, e := range part {
				doc[e.name] = e.v
				defs = append(defs, metricDef{Name: e.name, Unit: string(unitOf(e.name))})
			}
			doc["_aws"] = metadata{Timestamp: ts, CloudWatchMetrics: []directive{{Namespace: Namespace, Dimensions: sets, Metrics: defs}}}
			b, err := json.Marshal(doc)
			if err != nil {
				continue // only NaN or Inf values fail, and minipush records neither
			}
			lines = append(lines, append(b, '\n'))
		}
	}
	return lines
}

func unitOf(name string) Unit {
	if u, ok := Units[name]; ok {
		return u
	}
	return "None"
}

type metadata struct {
	Timestamp         int64       `json:"Timestamp"`
	CloudWatchMetrics []directive `json:"CloudWatchMetrics"`
}

type directive struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []metricDef `json:"Metrics"`
}

type metricDef struct {
	Name string `json:"Name"`
	Unit string `json:"Unit,omitempty"`
}

// Point is one metric of a parsed EMF line.
type Point struct {
	Namespace string
	Name      string
	Unit      Unit
	Values    []float64
	// Dims are the values of every dimension key the directive names.
	Dims map[string]string
	// DimensionSets are the directive's dimension sets.
	DimensionSets [][]string
	Time          time.Time
}

// ErrNotEMF is returned by Parse for a line that is not an EMF document at all (no
// "_aws" member): an ordinary log line.
var ErrNotEMF = errors.New("metrics: not an EMF line")

// Parse reads one EMF line the way CloudWatch Logs validates it: a JSON object with
// _aws.Timestamp and _aws.CloudWatchMetrics, each directive with a Namespace, dimension
// sets of at most MaxDimensions keys whose values are strings at the top level, and at
// most MaxMetrics metrics whose values are numbers or arrays of at most MaxValues
// numbers at the top level. Any violation is an error; CloudWatch would drop the line.
func Parse(line []byte) ([]Point, error) {
	line = bytes.TrimSpace(line)
	var root map[string]json.RawMessage
	if err := json.Unmarshal(line, &root); err != nil {
		return nil, ErrNotEMF
	}
	raw, ok := root["_aws"]
	if !ok {
		return nil, ErrNotEMF
	}
	var meta struct {
		Timestamp         *int64 `json:"Timestamp"`
		CloudWatchMetrics []struct {
			Namespace  string      `json:"Namespace"`
			Dimensions [][]string  `json:"Dimensions"`
			Metrics    []metricDef `json:"Metrics"`
		} `json:"CloudWatchMetrics"`
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, fmt.Errorf("metrics: _aws: %w", err)
	}
	if meta.Timestamp == nil {
		return nil, errors.New("metrics: _aws.Timestamp missing")
	}
	if len(meta.CloudWatchMetrics) == 0 {
		return nil, errors.New("metrics: _aws.CloudWatchMetrics empty")
	}
	at := time.UnixMilli(*meta.Timestamp)
	var points []Point
	for i, d := range meta.CloudWatchMetrics {
		if d.Namespace == "" {
			return nil, fmt.Errorf("metrics: directive %d: no Namespace", i)
		}
		if d.Dimensions == nil {
			return nil, fmt.Errorf("metrics: directive %d: no Dimensions", i)
		}
		if len(d.Metrics) > MaxMetrics {
			return nil, fmt.Errorf("metrics: directive %d: %d metrics, more than %d", i, len(d.Metrics), MaxMetrics)
		}
		dims := map[string]string{}
		for _, set := range d.Dimensions {
			if len(set) > MaxDimensions {
				return nil, fmt.Errorf("metrics: directive %d: a dimension set of %d keys, more than %d", i, len(set), MaxDimensions)
			}
			for _, k := range set {
				var v string
				if err := json.Unmarshal(root[k], &v); err != nil || v == "" {
					return nil, fmt.Errorf("metrics: dimension %q has no string value", k)
				}
				dims[k] = v
			}
		}
		for _, m := range d.Metrics {
			if m.Name == "" {
				return nil, fmt.Errorf("metrics: directive %d: a metric without a Name", i)
			}
			if m.Unit != "" && !validUnits[Unit(m.Unit)] {
				return nil, fmt.Errorf("metrics: metric %s: unit %q is not a CloudWatch unit", m.Name, m.Unit)
			}
			vals, err := values(root[m.Name])
			if err != nil {
				return nil, fmt.Errorf("metrics: metric %s: %w", m.Name, err)
			}
			points = append(points, Point{
				Namespace: d.Namespace, Name: m.Name, Unit: Unit(m.Unit), Values: vals,
				Dims: dims, DimensionSets: slices.Clone(d.Dimensions), Time: at,
			})
		}
	}
	return points, nil
}

func values(raw json.RawMessage) ([]float64, error) {
	if raw == nil {
		return nil, errors.New("no value at the top level")
	}
	var one float64
	if err := json.Unmarshal(raw, &one); err == nil {
		return []float64{one}, nil
	}
	var many []float64
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("value is neither a number nor an array of numbers")
	}
	if len(many) > MaxValues {
		return nil, fmt.Errorf("%d values, more than %d", len(many), MaxValues)
	}
	return many, nil
}

// validUnits are CloudWatch's units (MetricDatum.Unit).
var validUnits = map[Unit]bool{
	"Seconds": true, "Microseconds": true, "Milliseconds": true, "Bytes": true, "Kilobytes": true,
	"Megabytes": true, "Gigabytes": true, "Terabytes": true, "Bits": true, "Kilobits": true,
	"Megabits": true, "Gigabits": true, "Terabits": true, "Percent": true, "Count": true,
	"Bytes/Second": true, "Kilobytes/Second": true, "Megabytes/Second": true,
	"Gigabytes/Second": true, "Terabytes/Second": true, "Bits/Second": true,
	"Kilobits/Second": true, "Megabits/Second": true, "Gigabits/Second": true,
	"Terabits/Second": true, "Count/Second": true, "None": true,
}
