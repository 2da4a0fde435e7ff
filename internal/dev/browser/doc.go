// Package browser holds the console's end-to-end test: headless Chromium (Debian's
// chromium, installed by infra/install.sh only when missing) driven with chromedp
// through the operator's whole job on the local system: log in, create a campaign,
// upload its audience as CSV, preview a cron and schedule it now, watch it reach done,
// open its failures and the grant inventory. It saves screenshots to .local/screenshots/
// (docs/screenshots/, the README's, with UPDATE_SCREENSHOTS=1) and checks every API answer the browser got against
// openapi.json (internal/dev/apispec).
package browser
