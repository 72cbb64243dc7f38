// kafkajs against a Fjord listener secured with TLS (and SASL): produces five keyed records to
// partition 0 of TOPIC (created by the broker on first use) and prints "ok" and their offsets;
// on a failure prints the error to stderr and exits 1.
//
//   node kafkajs_secure.js BOOTSTRAP TOPIC CA_PEM [CERT_PEM KEY_PEM]
//   node kafkajs_secure.js BOOTSTRAP TOPIC CA_PEM --sasl MECHANISM USER PASSWORD
'use strict';
const fs = require('node:fs');
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic, ca, ...rest] = process.argv.slice(2);
  const ssl = { ca: [fs.readFileSync(ca, 'utf8')] };
  let sasl;
  if (rest[0] === '--sasl') {
    sasl = { mechanism: rest[1].toLowerCase(), username: rest[2], password: rest[3] };
  } else if (rest.length === 2) {
    ssl.cert = fs.readFileSync(rest[0], 'utf8');
    ssl.key = fs.readFileSync(rest[1], 'utf8');
  }
  const kafka = new Kafka({
    clientId: 'kafkajs-secure',
    brokers: bootstrap.split(','),
    ssl,
    sasl,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 10000,
    retry: { retries: 3 },
  });
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < 5; i++) {
    messages.push({ key: `key-${i}`, value: `kafkajs-${i}`, partition: 0 });
  }
  const sent = await producer.send({ topic, acks: -1, messages });
  await producer.disconnect();
  const base = Number(sent[0].baseOffset);
  console.log('ok', [0, 1, 2, 3, 4].map((i) => base + i).join(' '));
}

main().catch((error) => {
  console.error(`${error.name}: ${error.message}`);
  process.exit(1);
});
