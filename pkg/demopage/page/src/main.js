// The demo page: calls albctl's echo service with gRPC-Web (text format, so that server streams
// arrive message by message) through the listener named in config.json, shows the answers and
// offers the same actions to scripts as window.albctlDemo.
import { GrpcWebClientBase, MethodDescriptor, MethodType } from "grpc-web";
import { decodeEchoResponse, encodeEchoRequest } from "./echo.js";

const service = "/albctl.echo.v1.Echo/";

// grpc-web wants message classes in a descriptor but only calls the two functions with plain
// objects.
class EchoRequest {}
class EchoResponse {}
const method = (name, type) =>
  new MethodDescriptor(service + name, type, EchoRequest, EchoResponse, encodeEchoRequest, decodeEchoResponse);
const unaryEcho = method("UnaryEcho", MethodType.UNARY);
const serverStreamingEcho = method("ServerStreamingEcho", MethodType.SERVER_STREAMING);
const noSuchMethod = method("NoSuchMethod", MethodType.UNARY);

const client = new GrpcWebClientBase({ format: "text" });

const config = fetch("config.json").then((r) => {
  if (!r.ok) throw new Error(`config.json: HTTP ${r.status}`);
  return r.json();
});

async function url(descriptor) {
  const { target } = await config;
  return target.replace(/\/+$/, "") + descriptor.getName();
}

function show(id, text) {
  const el = document.getElementById(id);
  if (el) el.textContent = text;
}

// unary makes n UnaryEcho calls one after another and counts the answers per server.
async function unary(n = 100) {
  const result = { calls: n, ok: 0, failed: 0, servers: {}, answers: [], errors: [] };
  const target = await url(unaryEcho);
  for (let i = 1; i <= n; i++) {
    try {
      const res = await client.unaryCall(target, { message: `call ${i}` }, {}, unaryEcho);
      result.ok++;
      result.servers[res.server] = (result.servers[res.server] || 0) + 1;
      result.answers.push(res.server);
    } catch (err) {
      result.failed++;
      result.answers.push(`error ${err.code}`);
      result.errors.push({ call: i, code: err.code, message: err.message });
    }
    showUnary(result, i);
  }
  return result;
}

function showUnary(r, done) {
  const counts = Object.entries(r.servers)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([server, count]) => `  ${server}: ${count} (${Math.round((100 * count) / done)}%)`);
  const lines = [`${done}/${r.calls} calls: ${r.ok} ok, ${r.failed} failed`, ...counts];
  if (r.errors.length) lines.push(`last error: code ${r.errors.at(-1).code}: ${r.errors.at(-1).message}`);
  lines.push("", "answered by, in order:", r.answers.map((s, i) => `${i + 1}:${s}`).join(" "));
  show("unary-result", lines.join("\n"));
}

// stream makes one ServerStreamingEcho call for count replies and records each as it arrives,
// with the milliseconds since the call began.
async function stream(count = 10) {
  const target = await url(serverStreamingEcho);
  const result = { messages: [], code: null, error: "" };
  const began = performance.now();
  const render = () =>
    show(
      "stream-result",
      [
        ...result.messages.map((m, i) => `#${i + 1} +${m.at}ms ${m.server}: ${m.message}`),
        result.code === null ? "…" : `status ${result.code}${result.error ? `: ${result.error}` : " (OK)"}`,
      ].join("\n"),
    );
  render();
  return new Promise((resolve) => {
    const finish = (code, error) => {
      if (result.code !== null) return;
      result.code = code;
      result.error = error;
      render();
      resolve(result);
    };
    client
      .serverStreaming(target, { message: "stream", count }, {}, serverStreamingEcho)
      .on("data", (res) => {
        result.messages.push({ message: res.message, server: res.server, at: Math.round(performance.now() - began) });
        render();
      })
      .on("error", (err) => finish(err.code, err.message))
      .on("end", () => finish(0, ""));
  });
}

// unimplemented calls a method the echo service does not have and reports the status.
async function unimplemented() {
  let result;
  try {
    await client.unaryCall(await url(noSuchMethod), { message: "anyone?" }, {}, noSuchMethod);
    result = { code: 0, message: "the call succeeded, which it should not" };
  } catch (err) {
    result = { code: err.code, message: err.message };
  }
  show("unimplemented-result", `code ${result.code}: ${result.message}`);
  return result;
}

window.albctlDemo = { unary, stream, unimplemented };

function wire(id, action) {
  document.getElementById(id)?.addEventListener("click", async (e) => {
    e.target.disabled = true;
    try {
      await action();
    } catch (err) {
      show("status", `error: ${err.message}`);
    } finally {
      e.target.disabled = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wire("unary", () => unary(Number(document.getElementById("unary-n").value) || 1));
  wire("stream", () => stream(10));
  wire("unimplemented", () => unimplemented());
  config.then(
    ({ target }) => {
      show("target", target);
      const link = document.getElementById("target-link");
      if (link) link.href = target;
    },
    (err) => show("status", `error: ${err.message}`),
  );
});
