// The official socket.io JavaScript client forced to long-polling, each request on a new
// connection (Connection: close), so that with several server processes they land anywhere.
// usage: node polling_client.mjs <base url> <session id> <token> <count> <prefix>
// Sends <count> comments "<prefix> i" and prints one JSON line once it received all of them.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../../web/package.json"));
const { io } = require("socket.io-client");

const [base, sessionId, token, count, prefix] = process.argv.slice(2);
const got = { acks: [], comments: [], transport: null, sid: null };
const socket = io(base + "/live", {
  auth: { token, session_id: Number(sessionId) }, reconnection: false,
  transports: ["polling"], extraHeaders: { Connection: "close" },
});
const fail = (why) => { console.log(JSON.stringify({ error: String(why), got })); process.exit(1); };
setTimeout(() => fail("timeout"), 40000);
socket.on("connect_error", (err) => fail(`connect_error ${err.message}`));
socket.on("disconnect", (reason) => fail(`disconnect ${reason}`));
const mine = () => got.comments.filter((c) => c.text.startsWith(prefix + " "));
const finish = () => {
  if (got.acks.length === Number(count) && mine().length === Number(count)) {
    got.transport = socket.io.engine.transport.name;
    got.sid = socket.io.engine.id;
    console.log(JSON.stringify(got));
    socket.off("disconnect");
    socket.disconnect();
    process.exit(0);
  }
};
socket.on("comments", (batch) => { got.comments.push(...batch); finish(); });
socket.on("state", async () => {
  if (got.acks.length > 0) return;
  for (let i = 0; i < Number(count); i++) {
    got.acks.push(await socket.emitWithAck("comment", { text: `${prefix} ${i}` }));
  }
  finish();
});
