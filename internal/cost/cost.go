// Package cost is make bench's cost model: AWS list prices and the resources one
// recipient of a campaign costs, as make bench measured them (BENCHMARKS.md, "Per
// delivered message, by stage"). The bench prices what it measures with these
// constants; the operator API's forecast prices a campaign before it runs.
package cost

// List prices, us-east-1, as given in issue #8 (free tiers ignored).
const (
	PriceWRU        = 0.625 / 1e6 // DynamoDB on-demand, per write request unit
	PriceRRU        = 0.125 / 1e6 // DynamoDB on-demand, per read request unit
	PriceSQS        = 0.40 / 1e6  // SQS standard, per request (64 KiB chunk)
	PriceLambdaReq  = 0.20 / 1e6  // Lambda, per invocation
	PriceLambdaGBs  = 0.0000133334
	PriceHTTPAPIReq = 1.00 / 1e6 // API Gateway HTTP API, per request (first 300 million a month)
)

// Units are the billed resources of one recipient.
type Units struct {
	RRU, WRU, SQS, LambdaReq, LambdaGBs float64
}

// Dollars prices u.
func (u Units) Dollars() float64 {
	return u.RRU*PriceRRU + u.WRU*PriceWRU + u.SQS*PriceSQS + u.LambdaReq*PriceLambdaReq + u.LambdaGBs*PriceLambdaGBs
}

// Sent is what a sent message costs from the plan on (its grant's collection is paid
// already): plan, send and expire rows of make bench's table at 76f5876.
var Sent = Units{RRU: 1.040 + 3.070 + 2.000, WRU: 0.018 + 3.035 + 1.000, SQS: 0.006, LambdaReq: 0.013,
	LambdaGBs: 0.000684 + 0.003900 + 0.001048}

// Skipped is what a recipient that ends without a call costs (no grant, skipped,
// capped): the plan's share, the send's reads of the delivery and the grant, and the
// one final delivery write.
var Skipped = Units{RRU: 1.040 + 2.0, WRU: 0.018 + 1.0, SQS: 0.006, LambdaReq: 0.003, LambdaGBs: 0.000684 + 0.001}

// CapWrite is the frequency-cap counter's write, added to a sent message when the
// app has caps.
const CapWrite = 1.0
