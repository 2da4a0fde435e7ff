package main

import (
	"context"
	"flag"
	"log/slog"

	"minipush/internal/dev/localstack"
	"minipush/internal/dev/scalemodel"
)

// scaleFlag registers -scale-k, which puts the scale model of DynamoDB's partition
// limits in front of DynamoDB Local.
func scaleFlag(fs *flag.FlagSet) *float64 {
	return fs.Float64("scale-k", 0, "serve DynamoDB through the scale model (internal/dev/scalemodel): AWS's per-partition limits divided by this factor; 0 is off")
}

// withScaleModel starts the model in front of ep's DynamoDB when k > 0 and returns the
// endpoints clients should use (DynamoDB, and DynamoDB Streams which share it, through
// the model) and a stop that logs what the model refused, by table and index. Key
// values are left out of the log: they carry openids.
func withScaleModel(ctx context.Context, log *slog.Logger, ep localstack.Endpoints, k float64) (localstack.Endpoints, func(), error) {
	if k == 0 {
		return ep, func() {}, nil
	}
	m, err := scalemodel.Start(ctx, ep.DynamoDB, scalemodel.Options{K: k})
	if err != nil {
		return ep, nil, err
	}
	log.Info("scale model in front of DynamoDB Local", "k", k, "endpoint", m.URL)
	stop := func() {
		for _, r := range m.Stats().Resources {
			log.Info("scale model", "table", r.Table, "index", r.Index, "requests", r.Requests, "throttled", r.Throttled,
				"read_units", r.ReadUnits, "write_units", r.WriteUnits, "peak_share", r.PeakShare)
		}
		_ = m.Close()
	}
	ep.DynamoDB = m.URL
	return ep, stop, nil
}
