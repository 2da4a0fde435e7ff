package minipush

// Batch is the body of one SQS send message: many recipients of one run. Its ID is
// deterministic (run and sequence) so a planner that resumes after a crash re-sends the
// same batch ids, and send treats a recipient already recorded as finished.
type Batch struct {
	ID         string   `json:"id"`
	CampaignID string   `json:"campaignId"`
	Run        int      `json:"run"`
	AppID      string   `json:"appId"`
	OpenIDs    []string `json:"openIds"`
	Attempt    int      `json:"attempt,omitempty"` // transient re-queues so far
	// Busy counts re-queues of recipients whose claim another live sender held: they
	// grow the next look's delay toward the claim's lease, and spend no retry budget.
	Busy int `json:"busy,omitempty"`
}
