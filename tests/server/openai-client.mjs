// Drives a running `edgellm serve` with the official openai client (it starts no server itself).
//   node openai-client.mjs BASE_URL API_KEY        e.g. node openai-client.mjs http://127.0.0.1:8080 secret
// Checks with node:assert, prints one "ok <check>" line per check and a last line
// "RESULT <json>" that tests/EdgeLlm.Tests/Server/OpenAiClientTests.cs asserts on. Exit code 0 = all passed.
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const [baseUrl, apiKey] = process.argv.slice(2);
if (!baseUrl || !apiKey) {
  console.error('usage: node openai-client.mjs BASE_URL API_KEY');
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${baseUrl.replace(/\/$/, '')}/v1`, apiKey, maxRetries: 0, timeout: 120_000 });
const result = {};

// The model list: one model, whose id the other requests use.
const models = [];
for await (const m of client.models.list()) models.push(m);
assert.equal(models.length, 1, 'one model');
assert.equal(models[0].object, 'model');
const model = models[0].id;
result.model = model;
console.log(`ok models.list: ${model}`);

const messages = [
  { role: 'system', content: 'You tell short stories.' },
  { role: 'user', content: 'Tell me about a cat.' },
];

// A non-streamed chat completion (greedy, so the streamed one below must say the same).
const chat = await client.chat.completions.create({ model, messages, max_tokens: 24, temperature: 0 });
assert.equal(chat.object, 'chat.completion');
assert.equal(chat.choices.length, 1);
assert.equal(chat.choices[0].message.role, 'assistant');
assert.equal(typeof chat.choices[0].message.content, 'string');
assert.ok(['stop', 'length'].includes(chat.choices[0].finish_reason));
assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + chat.usage.completion_tokens);
assert.ok(chat.usage.prompt_tokens > 0 && chat.usage.completion_tokens > 0);
result.chat = { text: chat.choices[0].message.content, finish: chat.choices[0].finish_reason, usage: chat.usage };
console.log(`ok chat.completions.create: ${JSON.stringify(result.chat.text)} (${chat.choices[0].finish_reason})`);

// The same request streamed, with the usage chunk at the end.
const stream = await client.chat.completions.create({
  model, messages, max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let streamed = '';
let chunks = 0;
let finish = null;
let usage = null;
for await (const chunk of stream) {
  assert.equal(chunk.object, 'chat.completion.chunk');
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta?.content) streamed += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
  chunks++;
}
assert.ok(chunks > 2, `${chunks} chunks`);
assert.equal(streamed, result.chat.text, 'a greedy streamed answer equals the non-streamed one');
assert.equal(finish, result.chat.finish);
for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) assert.equal(usage[k], chat.usage[k], k);
// The same prompt again: the slot's KV cache holds all of it but the last token, which is evaluated anew.
assert.equal(usage.prompt_tokens_details.cached_tokens, usage.prompt_tokens - 1, 'cached_tokens');
result.stream = { text: streamed, chunks, finish, usage };
console.log(`ok chat.completions.create stream: ${chunks} chunks`);

// A text completion with a stop string.
const completion = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 32, temperature: 0, stop: ['.'] });
assert.equal(completion.object, 'text_completion');
assert.equal(completion.choices.length, 1);
assert.ok(!completion.choices[0].text.includes('.'), 'the stop string is not returned');
result.completion = { text: completion.choices[0].text, finish: completion.choices[0].finish_reason, usage: completion.usage };
console.log(`ok completions.create: ${JSON.stringify(result.completion.text)} (${result.completion.finish})`);

// Structured output (response_format json_schema, OpenAI's structured outputs), streamed: the text is
// one object of the schema as far as it goes, and a whole one when it ends with "stop".
const schema = {
  type: 'object',
  properties: { animal: { type: 'string', enum: ['cat', 'dog'] }, age: { type: 'integer' } },
  required: ['animal', 'age'],
  additionalProperties: false,
};
const structured = await client.chat.completions.create({
  model, messages, max_tokens: 40, temperature: 0, stream: true,
  response_format: { type: 'json_schema', json_schema: { name: 'pet', strict: true, schema } },
});
let sText = '';
let sFinish = null;
for await (const chunk of structured) {
  for (const c of chunk.choices) {
    if (c.delta?.content) sText += c.delta.content;
    if (c.finish_reason) sFinish = c.finish_reason;
  }
}
assert.ok(sText.startsWith('{'), `structured output starts an object: ${JSON.stringify(sText)}`);
if (sFinish === 'stop') {
  const obj = JSON.parse(sText);
  assert.ok(['cat', 'dog'].includes(obj.animal), `animal ${obj.animal}`);
  assert.ok(Number.isInteger(obj.age), `age ${obj.age}`);
}
result.structured = { text: sText, finish: sFinish };
console.log(`ok chat.completions.create json_schema stream: ${JSON.stringify(sText)} (${sFinish})`);

// llama-server's grammar field (GBNF), passed as an extra body field as OpenAI's clients allow:
// the reply is a sentence of the grammar, and finishing it ends the reply with "stop".
const grammared = await client.chat.completions.create({
  model, messages, max_tokens: 40, temperature: 0,
  grammar: 'root ::= ("yes" | "no") ", " [a-z]{1,8} "."',
});
const gText = grammared.choices[0].message.content;
assert.match(gText, /^(yes|no), [a-z]{1,8}\.$/, `grammar reply ${JSON.stringify(gText)}`);
assert.equal(grammared.choices[0].finish_reason, 'stop');
result.grammar = { text: gText, finish: grammared.choices[0].finish_reason };
console.log(`ok chat.completions.create grammar: ${JSON.stringify(gText)}`);

// A wrong key: 401, which the client raises as AuthenticationError.
const wrong = new OpenAI({ baseURL: client.baseURL, apiKey: `${apiKey}-wrong`, maxRetries: 0 });
try {
  await wrong.chat.completions.create({ model, messages, max_tokens: 4 });
  assert.fail('a wrong API key was accepted');
} catch (e) {
  assert.ok(e instanceof OpenAI.AuthenticationError, `expected AuthenticationError, got ${e?.constructor?.name}: ${e?.message}`);
  assert.equal(e.status, 401);
  result.authError = { status: e.status, code: e.code, type: e.type };
}
console.log('ok wrong key: AuthenticationError');

// Another model's name: 404 with OpenAI's error object (NotFoundError).
try {
  await client.chat.completions.create({ model: 'gpt-4o', messages, max_tokens: 4 });
  assert.fail('an unknown model was accepted');
} catch (e) {
  assert.ok(e instanceof OpenAI.NotFoundError, `expected NotFoundError, got ${e?.constructor?.name}: ${e?.message}`);
  result.unknownModel = { status: e.status, code: e.code, param: e.param };
}
console.log('ok unknown model: NotFoundError');

console.log(`RESULT ${JSON.stringify(result)}`);
