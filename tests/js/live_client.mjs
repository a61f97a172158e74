// The official socket.io JavaScript client, unmodified, against our /live namespace.
// usage: node live_client.mjs <base url> <session id> <token> <text>
// Prints one JSON line: what it received. Default transports (polling, then upgrade to websocket).
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../../web/package.json"));
const { io } = require("socket.io-client");

const [base, sessionId, token, text] = process.argv.slice(2);
const got = { hello: null, state: 0, comments: [], ack: null, refused: null, transport: null };
const socket = io(base + "/live", { auth: { token, session_id: Number(sessionId) }, reconnection: false });
const fail = (why) => { console.log(JSON.stringify({ error: String(why), got })); process.exit(1); };
setTimeout(() => fail("timeout"), 15000);

socket.on("connect_error", (err) => fail(`connect_error ${err.message} ${JSON.stringify(err.data)}`));
socket.on("hello", (data) => { got.hello = data; });
socket.on("refused", (data) => { got.refused = data; });
socket.on("state", async () => {
  got.state += 1;
  if (got.state !== 1) return;
  // wait for the websocket upgrade so both transports are exercised
  for (let i = 0; i < 50 && socket.io.engine.transport.name !== "websocket"; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  got.transport = socket.io.engine.transport.name;
  got.ack = await socket.emitWithAck("comment", { text });
  finish();
});
// The ack and the comment's batch may arrive in either order: finish when both are in.
const finish = () => {
  if (got.ack && got.comments.some((c) => c.text === text)) {
    console.log(JSON.stringify(got));
    socket.disconnect();
    process.exit(0);
  }
};
socket.on("comments", (batch) => {
  got.comments.push(...batch);
  finish();
});
