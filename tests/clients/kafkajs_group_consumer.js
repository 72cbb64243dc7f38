// A consumer-group worker for the group tests with kafkajs, with the same contract and output as
// group_consumer.py: subscribes to one topic with auto-commit off, from the earliest offset, prints
// each event as one JSON line on stdout, commits synchronously after each batch (or every
// --max-poll-records records of it), and on SIGTERM finishes the chunk in hand, leaves the group
// and exits 0, or 1 if that takes over CLOSE_TIMEOUT_MS. A commit refused because of a rebalance is
// logged to stderr and the worker goes on; a crash kafkajs does not restart from exits 1.
//
//   node kafkajs_group_consumer.js --bootstrap HOST:PORT --group G --topic T [--assignor range|roundrobin]
//       [--session-timeout-ms 6000] [--heartbeat-interval-ms 1000] [--max-poll-records N]
//
// kafkajs has neither static membership (--instance-id is refused) nor cooperative rebalancing.
// Its own round-robin assigner (the default) is named "RoundRobinAssigner" in the group protocol;
// the range assigner below takes the standard name "range", so it can share a group with the
// other clients.
'use strict';
const { parseArgs } = require('node:util');
const { Kafka, PartitionAssigners, AssignerProtocol, logLevel } = require('kafkajs');

const CLOSE_TIMEOUT_MS = 30000;
const REBALANCE_ERRORS = new Set(['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID']);

function emit(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

// The standard range assignor: for each topic, its subscribers sorted by member id each get a
// consecutive run of partitions, the first (partitions % subscribers) of them one more.
const rangeAssigner = ({ cluster }) => ({
  name: 'range',
  version: 0,
  protocol({ topics }) {
    return { name: this.name, metadata: AssignerProtocol.MemberMetadata.encode({ version: this.version, topics }) };
  },
  async assign({ members, topics }) {
    const assignment = Object.fromEntries(members.map(({ memberId }) => [memberId, {}]));
    for (const topic of topics) {
      const subscribers = members
        .filter(({ memberMetadata }) => AssignerProtocol.MemberMetadata.decode(memberMetadata).topics.includes(topic))
        .map(({ memberId }) => memberId)
        .sort();
      const partitions = cluster.findTopicPartitionMetadata(topic).map((p) => p.partitionId).sort((a, b) => a - b);
      const share = Math.floor(partitions.length / subscribers.length);
      const extra = partitions.length % subscribers.length;
      subscribers.forEach((memberId, i) => {
        const start = i * share + Math.min(i, extra);
        assignment[memberId][topic] = partitions.slice(start, start + share + (i < extra ? 1 : 0));
      });
    }
    return members.map(({ memberId }) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: this.version, assignment: assignment[memberId] }),
    }));
  },
});

async function main() {
  const { values: args } = parseArgs({
    options: {
      bootstrap: { type: 'string' },
      group: { type: 'string' },
      topic: { type: 'string' },
      'instance-id': { type: 'string' },
      assignor: { type: 'string' },
      'session-timeout-ms': { type: 'string', default: '6000' },
      'heartbeat-interval-ms': { type: 'string', default: '1000' },
      'max-poll-records': { type: 'string' },
    },
  });
  for (const required of ['bootstrap', 'group', 'topic']) {
    if (!args[required]) throw new Error(`--${required} is required`);
  }
  if (args['instance-id']) throw new Error('kafkajs does not support static membership (group.instance.id)');
  const assigners = { range: rangeAssigner, roundrobin: PartitionAssigners.roundRobin };
  if (args.assignor && !assigners[args.assignor]) {
    throw new Error(`kafkajs supports the assignors range and roundrobin, not ${args.assignor}`);
  }
  const { topic } = args;
  const maxPollRecords = args['max-poll-records'] ? Number(args['max-poll-records']) : Infinity;

  // WARN and ERROR go to stderr (console.warn, console.error); stdout carries only the events.
  const kafka = new Kafka({ clientId: 'fjord-kafkajs-group', brokers: [args.bootstrap], logLevel: logLevel.WARN });
  const consumer = kafka.consumer({
    groupId: args.group,
    sessionTimeout: Number(args['session-timeout-ms']),
    heartbeatInterval: Number(args['heartbeat-interval-ms']),
    partitionAssigners: [assigners[args.assignor || 'roundrobin']],
    maxWaitTimeInMs: 500,
  });
  emit('started');

  let owned = [];
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    owned = [...(payload.memberAssignment[topic] || [])].sort((a, b) => a - b);
    emit('assigned', { partitions: owned });
  });
  // kafkajs rebalances eagerly: it stops consuming everything before rejoining.
  consumer.on(consumer.events.REBALANCING, () => {
    if (owned.length > 0) {
      owned = [];
      emit('assigned', { partitions: owned });
    }
  });
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (!payload.restart) {
      console.error('kafkajs consumer crashed:', payload.error);
      process.exit(1);
    }
  });
  process.once('SIGTERM', () => {
    setTimeout(() => {
      console.error(`disconnecting took over ${CLOSE_TIMEOUT_MS} ms`);
      process.exit(1);
    }, CLOSE_TIMEOUT_MS);
    consumer.disconnect().then(() => {
      emit('closed');
      process.exit(0);
    }, (error) => {
      console.error('disconnect failed:', error);
      process.exit(1);
    });
  });

  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale }) => {
      const { partition, messages } = batch;
      for (let i = 0; i < messages.length && isRunning() && !isStale(); i += maxPollRecords) {
        const chunk = messages.slice(i, i + maxPollRecords);
        for (const { offset, key, value } of chunk) {
          emit('record', { partition, offset: Number(offset), key: key && key.toString(), value: value && value.toString() });
          resolveOffset(offset);
        }
        const next = Number(chunk[chunk.length - 1].offset) + 1;
        try {
          // With explicit offsets this is a plain OffsetCommit of this generation: no retries, and
          // unlike consumer.commitOffsets() it still commits while the consumer is stopping.
          await commitOffsetsIfNecessary({ topics: [{ topic, partitions: [{ partition, offset: String(next) }] }] });
        } catch (error) {
          if (!REBALANCE_ERRORS.has(error.type)) throw error;
          console.error(`commit of partition ${partition} at ${next} refused by a rebalance: ${error.message}`);
          return;
        }
        emit('committed', { offsets: { [partition]: next } });
        await heartbeat();
      }
    },
  });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
