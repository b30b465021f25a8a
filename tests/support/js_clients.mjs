// Drives a local Realtime server with the JavaScript clients people use: the `openai` npm
// package's realtime WebSocket client and the OpenAI Agents SDK (`@openai/agents-realtime`).
// Usage: node js_clients.mjs <openai|agents> <wss://127.0.0.1:PORT/v1/realtime>
// (the server's certificate trusted through NODE_EXTRA_CA_CERTS). Every server event is
// checked with the Agents SDK's own zod schemas; the script prints one JSON line (what it saw)
// and exits 1 with the problems if any event failed its schema or a step went wrong.
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const [which, url] = process.argv.slice(2);
const realtimeDir = path.dirname(require.resolve('@openai/agents-realtime'));
// the schemas the SDK parses server events with (not exported by name: read from its file)
const { realtimeServerEventSchema } = require(path.join(realtimeDir, 'openaiRealtimeEvents.js'));
const knownTypes = new Set(
  realtimeServerEventSchema.options.map((schema) => schema.shape.type.value),
);

const problems = [];
const seen = [];
const STEP_MS = 20000;

function check(event) {
  seen.push(event.type);
  if (!knownTypes.has(event.type)) return;
  const parsed = realtimeServerEventSchema.safeParse(event);
  if (!parsed.success) {
    problems.push(`${event.type}: ${JSON.stringify(parsed.error.issues).slice(0, 400)}`);
  }
}

function tone(ms) {
  const samples = new Int16Array((24000 * ms) / 1000);
  for (let i = 0; i < samples.length; i++) {
    samples[i] = Math.round(Math.sin((2 * Math.PI * 220 * i) / 24000) * 8000);
  }
  return samples;
}

function waitFor(on, type, test = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} within ${STEP_MS} ms`)), STEP_MS);
    on((event) => {
      if (event.type === type && test(event)) {
        clearTimeout(timer);
        resolve(event);
      }
    });
  });
}

const WEATHER = {
  type: 'function',
  name: 'get_weather',
  description: 'Current weather in a city.',
  parameters: {
    type: 'object',
    properties: { city: { type: 'string' } },
    required: ['city'],
    additionalProperties: false,
  },
};

async function withOpenAI() {
  const { OpenAI } = await import('openai');
  const { OpenAIRealtimeWS } = await import('openai/realtime/ws');
  const base = new URL(url);
  base.protocol = 'https';
  base.pathname = '/v1';
  const client = new OpenAI({ apiKey: 'unused', baseURL: base.toString() });
  const rt = new OpenAIRealtimeWS({ model: 'gpt-realtime' }, client);
  const listeners = [];
  const on = (f) => listeners.push(f);
  rt.on('event', (event) => {
    check(event);
    for (const f of listeners) f(event);
  });
  rt.on('error', (err) => problems.push(`error: ${JSON.stringify(err.error ?? err.message)}`));
  const created = await waitFor(on, 'session.created');
  if (created.session.model !== 'gpt-realtime') problems.push('session.model not echoed');
  const say = async (text) => {
    const added = waitFor(on, 'conversation.item.done');
    rt.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user',
      content: [{ type: 'input_text', text }] } });
    return (await added).item;
  };
  const reply = async () => {
    const done = waitFor(on, 'response.done');
    rt.send({ type: 'response.create' });
    return (await done).response;
  };
  rt.send({ type: 'session.update', session: { type: 'realtime', output_modalities: ['text'],
    tools: [WEATHER], audio: { input: { turn_detection: null,
      transcription: { model: 'gpt-4o-mini-transcribe' } } } } });
  await waitFor(on, 'session.updated');
  // text
  const first = await say('hello there');
  if ((await reply()).status !== 'completed') problems.push('text reply not completed');
  // a tool
  await say('what is the weather in Paris');
  const call = (await reply()).output[0];
  if (call?.type !== 'function_call') problems.push('no function call');
  rt.send({ type: 'conversation.item.create', item: { type: 'function_call_output',
    call_id: call.call_id, output: '{"sky": "clear"}' } });
  await reply();
  // audio out, and audio in (transcription fails: the server has no speech-to-text)
  rt.send({ type: 'session.update', session: { type: 'realtime',
    output_modalities: ['audio'] } });
  await waitFor(on, 'session.updated');
  await say('hello again');
  const spoken = (await reply()).output[0];
  const audio = Buffer.from(tone(400).buffer).toString('base64');
  const failed = waitFor(on, 'conversation.item.input_audio_transcription.failed');
  rt.send({ type: 'input_audio_buffer.append', audio });
  rt.send({ type: 'input_audio_buffer.commit' });
  await failed;
  // cancel during audio, then truncate what was heard
  await say('tell me a long story');
  const cancelled = waitFor(on, 'response.done');
  const itemDone = waitFor(on, 'conversation.item.done', (e) => e.item.role === 'assistant');
  const firstAudio = waitFor(on, 'response.output_audio.delta');
  rt.send({ type: 'response.create' });
  const delta = await firstAudio;
  rt.send({ type: 'response.cancel' });
  const ended = (await itemDone).item;
  const response = (await cancelled).response;
  if (response.status !== 'cancelled') problems.push(`cancel: response ${response.status}`);
  if (ended.status !== 'incomplete') problems.push(`cancel: item ${ended.status}`);
  const truncated = waitFor(on, 'conversation.item.truncated');
  rt.send({ type: 'conversation.item.truncate', item_id: delta.item_id, content_index: 0,
    audio_end_ms: 50 });
  await truncated;
  // delete
  const deleted = waitFor(on, 'conversation.item.deleted');
  rt.send({ type: 'conversation.item.delete', item_id: first.id });
  await deleted;
  void spoken;
  rt.close();
}

async function withAgents() {
  const { RealtimeAgent, RealtimeSession, tool } = await import('@openai/agents-realtime');
  const weather = tool({
    name: 'get_weather',
    description: 'Current weather in a city.',
    parameters: WEATHER.parameters,
    strict: true,
    execute: async ({ city }) => `clear skies in ${city}`,
  });
  const agent = new RealtimeAgent({ name: 'local', instructions: 'Be brief.', tools: [weather] });
  const session = new RealtimeSession(agent, { transport: 'websocket', model: 'gpt-realtime' });
  const listeners = [];
  const on = (f) => listeners.push(f);
  session.transport.on('*', (event) => {
    check(event);
    for (const f of listeners) f(event);
  });
  session.on('error', (err) => problems.push(`session error: ${JSON.stringify(err.error)}`));
  await session.connect({ apiKey: 'unused', url });
  await waitFor(on, 'session.updated');
  const turn = async (text, type = 'response.done') => {
    const done = waitFor(on, type);
    session.sendMessage(text);
    return done;
  };
  // text (spoken: the SDK's default output)
  await turn('hello there');
  // a tool: the SDK runs it and asks for the answer
  const toolDone = new Promise((resolve) => session.on('agent_tool_end', resolve));
  await turn('what is the weather in Paris');
  await toolDone;
  await waitFor(on, 'response.done');
  // audio in
  const committed = waitFor(on, 'input_audio_buffer.committed');
  session.sendAudio(tone(400).buffer, { commit: true });
  await committed;
  // cancel during audio: interrupt() cancels the response and truncates what was played
  const cancelled = waitFor(on, 'response.done');
  const itemDone = waitFor(on, 'conversation.item.done', (e) => e.item.role === 'assistant');
  const firstAudio = waitFor(on, 'response.output_audio.delta');
  const truncated = waitFor(on, 'conversation.item.truncated');
  session.sendMessage('tell me a long story');
  await firstAudio;
  session.interrupt();
  const ended = (await itemDone).item;
  const response = (await cancelled).response;
  if (response.status !== 'cancelled') problems.push(`cancel: response ${response.status}`);
  if (ended.status !== 'incomplete') problems.push(`cancel: item ${ended.status}`);
  await truncated;
  // delete, through the SDK's history
  const deleted = waitFor(on, 'conversation.item.deleted');
  session.updateHistory((history) => history.slice(1));
  await deleted;
  await new Promise((resolve) => setTimeout(resolve, 200));
  const open = session.history.filter((item) => item.status === 'in_progress');
  if (open.length) problems.push(`history items still in progress: ${open.length}`);
  session.close();
}

try {
  await (which === 'openai' ? withOpenAI() : withAgents());
} catch (err) {
  problems.push(`failed: ${err?.stack ?? err}`);
}
console.log(JSON.stringify({ client: which, events: seen.length, types: [...new Set(seen)],
  problems }));
process.exit(problems.length ? 1 : 0);
