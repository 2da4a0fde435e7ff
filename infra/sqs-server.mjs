// The local SQS server (local-aws-sqs, JSON protocol as spoken by aws-sdk-go-v2).
// Usage: node sqs-server.mjs [port]. Port 0 (the default) lets the OS pick a free one; the
// chosen port is printed as one JSON line on stdout so the Go side never races for ports.
import { createSqsServer } from "local-aws-sqs";

const port = Number(process.argv[2] ?? 0);
const server = await createSqsServer({
  port,
  hostname: "127.0.0.1",
  region: "us-east-1",
  // Test namespaces create and delete queues all the time; AWS's 60 s wait before a
  // name can be reused would only slow them down.
  emulateQueueCreationLifecycle: false,
  validateDlqDestination: true,
});
if (!server.listening) {
  await new Promise((resolve) => server.once("listening", resolve));
}
process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");

// The parent holds our stdin open for as long as it lives: EOF means it is gone (even if
// it was SIGKILLed), so we exit instead of lingering as an orphan.
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
