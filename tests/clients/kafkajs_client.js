// kafkajs against a running Fjord broker: admin (create, describe configs, delete) and an
// idempotent producer writing keyed records with headers, timestamps, null and empty values,
// uncompressed and gzip (the codecs kafkajs has without plugins). Prints what it produced as
// JSON (partition and offset of each record) for the test to read back with another client.
//
//   node kafkajs_client.js produce BOOTSTRAP TOPIC
//   node kafkajs_client.js delete BOOTSTRAP TOPIC
//
// BOOTSTRAP is one host:port or several, comma-separated.
'use strict';
const assert = require('node:assert');
const { Kafka, CompressionTypes, ConfigResourceTypes, logLevel } = require('kafkajs');

// Current timestamps: records far in the past would be due for deletion by retention.ms.
const T0 = Date.now();

async function produce(kafka, topic) {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: true });
  const described = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms'] }],
    includeSynonyms: false,
  });
  const retention = described.resources[0].configEntries.find((e) => e.configName === 'retention.ms');
  assert.strictEqual(retention.configValue, '604800000');

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const sent = [];
  const codecs = [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP]];
  for (const [c, [name, codec]] of codecs.entries()) {
    for (let i = 0; i < 12; i++) {
      const value = i % 6 === 4 ? null : i % 6 === 5 ? '' : `${name}-${i}`;
      const message = {
        key: `key-${i % 5}`,
        value,
        headers: { codec: name, index: String(i) },
        timestamp: String(T0 + 1000 * c + i),
      };
      const [result] = await producer.send({ topic, acks: -1, compression: codec, messages: [message] });
      assert.strictEqual(result.errorCode, 0);
      sent.push({ partition: result.partition, offset: Number(result.baseOffset), key: message.key, value,
        headers: message.headers, timestamp: Number(message.timestamp) });
    }
  }
  await producer.disconnect();
  const offsets = await admin.fetchTopicOffsets(topic);
  const total = offsets.reduce((sum, p) => sum + Number(p.high), 0);
  assert.strictEqual(total, sent.length);
  await admin.disconnect();
  console.log(JSON.stringify(sent));
}

async function remove(kafka, topic) {
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic] });
  const topics = await admin.listTopics();
  assert.ok(!topics.includes(topic), `${topic} still listed`);
  await admin.disconnect();
  console.log('deleted');
}

async function main() {
  const [mode, bootstrap, topic] = process.argv.slice(2);
  const kafka = new Kafka({ clientId: 'fjord-kafkajs', brokers: bootstrap.split(','), logLevel: logLevel.ERROR });
  await (mode === 'produce' ? produce(kafka, topic) : remove(kafka, topic));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
