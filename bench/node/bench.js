// npm faktory-worker driven through its public API (Worker, Client).
//
//   node bench.js work URL QUEUE CONCURRENCY         one worker process
//   node bench.js push|pushb URL QUEUE COUNT         prints the seconds taken
//
// BENCH_PROBE_PORT: the handler and the ACK report latency (ns since the push) as UDP datagrams.
"use strict";
const dgram = require("dgram");
const { Worker, Client } = require("faktory-worker");

const probePort = Number(process.env.BENCH_PROBE_PORT || 0);
const probeSock = probePort ? dgram.createSocket("udp4") : null;
function probe(kind, pushed) {
  if (!probeSock || typeof pushed !== "number") return;
  const elapsed = process.hrtime.bigint() - BigInt(pushed);
  probeSock.send(`${kind} ${elapsed}`, probePort, "127.0.0.1");
}

async function work(url, queue, concurrency) {
  const worker = new Worker({ url, queues: [queue], concurrency });
  worker.register("noop", async (...args) => { if (args.length) probe("S", args[0]); });
  worker.register("nap", (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000)));
  if (probeSock) {
    const pushed = new Map();
    const fetch = worker.client.fetch.bind(worker.client);
    const ack = worker.client.ack.bind(worker.client);
    worker.client.fetch = async (...queues) => {
      const job = await fetch(...queues);
      if (job && job.args && job.args.length) pushed.set(job.jid, job.args[0]);
      return job;
    };
    worker.client.ack = async (jid) => {
      const result = await ack(jid);
      probe("A", pushed.get(jid));
      pushed.delete(jid);
      return result;
    };
  }
  await worker.work();
}

async function push(url, queue, count, bulk) {
  const client = new Client({ url, poolSize: 1 });
  await client.info();
  const started = process.hrtime.bigint();
  if (bulk) {
    for (let start = 0; start < count; start += 1000) {
      const jobs = [];
      for (let i = start; i < Math.min(count, start + 1000); i++) {
        jobs.push({ jobtype: "noop", args: [], queue, retry: 25 });
      }
      const rejected = await client.pushBulk(jobs);
      if (Object.keys(rejected).length) throw new Error("PUSHB rejected jobs");
    }
  } else {
    for (let i = 0; i < count; i++) {
      await client.push({ jobtype: "noop", args: [], queue, retry: 25 });
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(seconds.toFixed(6));
  await client.close();
}

const [mode, url, queue, n] = process.argv.slice(2);
if (mode === "work") {
  work(url, queue, Number(n)).catch((e) => { console.error(e); process.exit(1); });
} else {
  push(url, queue, Number(n), mode === "pushb").catch((e) => { console.error(e); process.exit(1); });
}
