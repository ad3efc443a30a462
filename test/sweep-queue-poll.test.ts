/**
 * The coordinator's poll of one job (src/sweep/queue.ts pollJob): a job that finishes between the
 * two Redis reads must not be collected without its return value. The interleaving is injected: a
 * fake queue whose job completes right after the first read, whichever it is.
 */
import { describe, expect, it } from 'vitest';
import { pollJob, type JobSource } from '../src/sweep/queue.js';

interface FakeJob {
  returnvalue: { worker: string } | null;
  failedReason?: string;
}

/** A job that is active until the first read, then `final` with `value`. */
function finishesAfterFirstRead(final: 'completed' | 'failed', value: FakeJob): JobSource<FakeJob> {
  let finished = false;
  return {
    async getJobState(): Promise<string> {
      const s = finished ? final : 'active';
      finished = true;
      return s;
    },
    async getJob(): Promise<FakeJob | undefined> {
      const j = finished ? value : { returnvalue: null };
      finished = true;
      return j;
    },
  };
}

describe('pollJob', () => {
  it('a job that completes between the reads is collected with its return value, on the next poll', async () => {
    const q = finishesAfterFirstRead('completed', { returnvalue: { worker: 'w1' } });
    const first = await pollJob(q, 'j');
    // Either it was still active, or it is complete with its value: never complete without one.
    if (first.job !== null) expect(first.job.returnvalue).toEqual({ worker: 'w1' });
    else expect(first.state).toBe('active');
    const second = first.job ?? (await pollJob(q, 'j')).job;
    expect(second?.returnvalue).toEqual({ worker: 'w1' });
  });

  it('a failed job is read after its failure, with the reason', async () => {
    const q = finishesAfterFirstRead('failed', { returnvalue: null, failedReason: 'EFAULT: x' });
    let p = await pollJob(q, 'j');
    if (p.job === null) p = await pollJob(q, 'j');
    expect(p.state).toBe('failed');
    expect(p.job?.failedReason).toBe('EFAULT: x');
  });

  it('a job removed between the reads is unknown, not collected', async () => {
    const q: JobSource<FakeJob> = { getJobState: async () => 'completed', getJob: async () => undefined };
    expect(await pollJob(q, 'j')).toEqual({ state: 'unknown', job: null });
  });
});
