// Drives one Node Realtime client through a conformance plan (tests/conformance/plans.py).
//
// Reads {client, server, plan} as JSON on stdin; prints {"received": [[event...]...]} on
// stdout: per connection, the server events the client's API handed out, in order, up to
// the plan's last step. The lines that point each client at the server are the
// `<!-- snippet: node_* -->` blocks of docs/clients.md, run here as written (their
// `import` lines are satisfied by each client's imports below), so the docs cannot drift.
//
// client: "ws" (the ws package), "openai" (OpenAIRealtimeWS, over wss), "browser" (the
// WHATWG WebSocket built into Node, offering subprotocols), "agents" (@openai/agents-realtime,
// which runs its own session: the plan's steps are not used, it sends one user message).

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const DOC = path.join(here, "..", "..", "docs", "clients.md");
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const TIMEOUT_MS = 20000 * Number(process.env.RTREPLAY_TEST_TIMEOUT_SCALE || "1");

function snippet(name) {
  const text = fs.readFileSync(DOC, "utf8");
  const re = new RegExp("^<!-- snippet: " + name + " -->\\n```js\\n([\\s\\S]*?)^```", "m");
  const m = re.exec(text);
  if (!m) throw new Error(`docs/clients.md has no js snippet ${name}`);
  return m[1].split("\n").filter((line) => !line.startsWith("import ")).join("\n");
}

// Run a snippet with `names` in scope and return the variables it defines in `wanted`.
async function runSnippet(name, names, wanted) {
  const body = snippet(name) + `\nreturn { ${wanted.join(", ")} };`;
  const fn = new AsyncFunction(...Object.keys(names), body);
  return fn(...Object.values(names));
}

// The plan machine of plans.py, step for step.
class PlanMachine {
  constructor(steps) {
    this.steps = steps;
    this.index = 0;
    this.received = [];
    this.last = {};
    this.audioBytes = 0;
    this.finished = false;
  }
  start() {
    return this.advance();
  }
  get waitingForClose() {
    return !this.finished && this.index < this.steps.length && "until_closed" in this.steps[this.index];
  }
  receive(event) {
    if (this.finished) return [];
    this.received.push(event);
    const kind = event.type;
    if (typeof kind === "string") {
      this.last[kind] = event;
      if (kind === "response.output_audio.delta" || kind === "response.audio.delta") {
        this.audioBytes += Buffer.from(event.delta || "", "base64").length;
      }
    }
    const step = this.steps[this.index] || {};
    if (step.until === kind) {
      this.index += 1;
      return this.advance();
    }
    return [];
  }
  closed() {
    if (this.finished) return;
    if (this.waitingForClose) {
      this.index += 1;
      this.finished = true;
      return;
    }
    const seen = this.received.slice(-5).map((e) => e.type);
    throw new Error(`the connection closed while waiting for ${JSON.stringify(this.steps[this.index])}; last events: ${seen}`);
  }
  advance() {
    const actions = [];
    while (this.index < this.steps.length) {
      const step = this.steps[this.index];
      if (!("send" in step)) return actions;
      actions.push({ send: this.resolve(step.send) });
      this.index += 1;
    }
    this.finished = true;
    actions.push({ close: true });
    return actions;
  }
  resolve(value) {
    if (Array.isArray(value)) return value.map((v) => this.resolve(v));
    if (value && typeof value === "object") {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.resolve(v)]));
    }
    if (typeof value === "string") {
      const m = /^\$\{([^}:]+)(?::([^}]*))?\}$/.exec(value);
      if (m) return this.lookup(m[1], m[2]);
    }
    return value;
  }
  lookup(kind, dotted) {
    if (kind === "played_ms") return Math.floor(this.audioBytes / 48);
    if (!(kind in this.last)) throw new Error(`no ${kind} event received yet`);
    let value = this.last[kind];
    for (const part of (dotted || "").split(".")) if (part) value = value[Array.isArray(value) ? Number(part) : part];
    return value;
  }
}

// How each connection ended, in order: {code, reason} when the server closed it first
// (code 1006 when it dropped the TCP connection), null when the client closed it.
const closes = [];

// Run one connection: `open(onEvent, onClose)` connects and returns {send, close, ready}.
function runConnection(steps, open) {
  return new Promise((resolve, reject) => {
    const machine = new PlanMachine(steps);
    const index = closes.length;
    closes.push(null);
    let conn;
    const timer = setTimeout(() => reject(new Error(`timed out at step ${machine.index}: ${JSON.stringify(steps[machine.index])}`)), TIMEOUT_MS);
    const finish = (err) => {
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(machine.received);
    };
    const perform = (actions) => {
      for (const action of actions) {
        if (action.close) {
          conn.close();
          finish();
          return;
        }
        conn.send(action.send);
      }
    };
    const onEvent = (event) => {
      try {
        perform(machine.receive(event));
      } catch (err) {
        finish(err);
      }
    };
    const onClose = (code, reason) => {
      if (typeof code === "number" && !machine.finished) {
        closes[index] = { code, reason: reason === undefined ? "" : String(reason) };
      }
      try {
        if (!machine.finished) machine.closed();
        finish();
      } catch (err) {
        finish(err);
      }
    };
    open(onEvent, onClose, (err) => finish(err))
      .then((c) => {
        conn = c;
        return c.ready;
      })
      .then(() => perform(machine.start()))
      .catch((err) => finish(err));
  });
}

const clients = {
  async ws(server, spec) {
    const { default: WebSocket } = await import("ws");
    return runConnection(spec.steps, async (onEvent, onClose, onError) => {
      const { ws } = await runSnippet("node_ws", { server, WebSocket }, ["ws"]);
      ws.on("message", (data) => onEvent(JSON.parse(data.toString())));
      ws.on("close", onClose);
      ws.on("error", onError);
      const ready = new Promise((res) => ws.once("open", res));
      return { ready, send: (e) => ws.send(JSON.stringify(e)), close: () => ws.close() };
    });
  },

  async browser(server, spec) {
    return runConnection(spec.steps, async (onEvent, onClose, onError) => {
      const apiKey = server.apiKey;
      const { ws } = await runSnippet("node_browser", { server, apiKey, WebSocket: globalThis.WebSocket }, ["ws"]);
      ws.onmessage = (e) => onEvent(JSON.parse(e.data));
      ws.onclose = onClose;
      ws.onerror = () => onError(new Error("browser WebSocket error (handshake refused or subprotocol not selected?)"));
      const ready = new Promise((res, rej) =>
        ws.addEventListener("open", () =>
          ws.protocol === "realtime" ? res() : rej(new Error(`the server chose subprotocol ${JSON.stringify(ws.protocol)}`)),
        ),
      );
      return { ready, send: (e) => ws.send(JSON.stringify(e)), close: () => ws.close() };
    });
  },

  async openai(server, spec) {
    const { default: OpenAI } = await import("openai");
    const { OpenAIRealtimeWS } = await import("openai/realtime/ws");
    return runConnection(spec.steps, async (onEvent, onClose) => {
      const { rt } = await runSnippet("node_openai", { server, fs, OpenAI, OpenAIRealtimeWS }, ["rt"]);
      rt.on("event", onEvent);
      rt.on("error", () => {}); // error events also reach the "event" listener above
      rt.socket.on("close", onClose);
      const ready = new Promise((res, rej) => {
        rt.socket.once("open", res);
        rt.socket.once("error", rej);
      });
      return { ready, send: (e) => rt.send(e), close: () => rt.close() };
    });
  },

  async agents(server, _spec) {
    const { OpenAIRealtimeWebSocket, RealtimeAgent, RealtimeSession } = await import("@openai/agents-realtime");
    const received = [];
    let done = false;
    let finished;
    const finishedPromise = new Promise((res) => (finished = res));
    let configured;
    const configuredPromise = new Promise((res) => (configured = res));
    // Listen from the very first frame: the snippet's connect() returns after session.created
    // may already have arrived, so the listener goes on in the session's constructor.
    class ListeningSession extends RealtimeSession {
      constructor(...args) {
        super(...args);
        this.on("error", () => {}); // error events also reach the "*" listener below
        this.transport.on("*", (event) => {
          if (done) return;
          received.push(event);
          // Talk once the session is configured (both of the SDK's session.update were
          // answered): the SDK races its second update against the first otherwise.
          if (event.type === "session.updated" && received.filter((e) => e.type === "session.updated").length === 2) {
            configured();
          }
          if (event.type === "rate_limits.updated" && received.some((e) => e.type === "response.done")) {
            done = true;
            finished();
          }
        });
      }
    }
    const { session } = await runSnippet(
      "node_agents",
      { server, OpenAIRealtimeWebSocket, RealtimeAgent, RealtimeSession: ListeningSession },
      ["session"],
    );
    let timer;
    const timeout = new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`timed out; got ${received.map((e) => e.type)}`)), TIMEOUT_MS);
    });
    await Promise.race([configuredPromise, timeout]);
    session.sendMessage("Say hello in three words.");
    await Promise.race([finishedPromise, timeout]);
    clearTimeout(timer);
    session.close();
    return received;
  },
};

async function main() {
  const request = JSON.parse(fs.readFileSync(0, "utf8"));
  const client = clients[request.client];
  if (!client) throw new Error(`unknown client ${request.client}`);
  const received = [];
  for (const spec of request.plan) received.push(await client(request.server, spec));
  // Exit once the output is written: a pipe takes 64 KB at a time, and exiting at once
  // would cut a longer answer (sessions with audio) short.
  process.stdout.write(JSON.stringify({ received, closes }), () => process.exit(0));
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
