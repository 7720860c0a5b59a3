import { describe, expect, it } from 'vitest';
import { ChainLinks } from './chainLinks.js';

/** A stand-in row hash for position p: entry p links to hashOf(p - 1). */
const hashOf = (position: number) => Buffer.alloc(32, position % 251);
const PRIOR = hashOf(0);

/** Hands over run start..end as a reader would, links intact unless `previousOfStart` says otherwise. */
function add(links: ChainLinks, start: number, end: number, previousOfStart = hashOf(start - 1)) {
  links.add(start, end, previousOfStart, hashOf(end));
}

describe('ChainLinks', () => {
  it('joins runs handed over in any order into one whole range', () => {
    const links = new ChainLinks(10);
    add(links, 501, 700);
    add(links, 1, 200);
    add(links, 701, 1_000);
    add(links, 201, 500);
    expect(links.finish(1, 1_000, PRIOR)).toEqual({});
  });

  it('reports a link broken where two runs meet, whichever came first', () => {
    const before = new ChainLinks(10);
    add(before, 1, 200);
    add(before, 201, 400, hashOf(7));
    expect(before.finish(1, 400, PRIOR)).toEqual({ firstBroken: 201 });
    const after = new ChainLinks(10);
    add(after, 201, 400, hashOf(7));
    add(after, 1, 200);
    expect(after.finish(1, 400, PRIOR)).toEqual({ firstBroken: 201 });
  });

  it('checks the first position against the prior hash, and keeps the earliest break a reader found within a run', () => {
    const links = new ChainLinks(10);
    add(links, 1, 100, hashOf(42));
    links.broken(60);
    links.broken(50);
    expect(links.finish(1, 100, PRIOR)).toEqual({ firstBroken: 1 });
    const within = new ChainLinks(10);
    add(within, 1, 100);
    within.broken(60);
    within.broken(50);
    expect(within.finish(1, 100, PRIOR)).toEqual({ firstBroken: 50 });
  });

  it('reports the first gap, a missing start and a missing tail', () => {
    const gaps = new ChainLinks(10);
    add(gaps, 300, 400);
    add(gaps, 1, 100);
    add(gaps, 150, 200);
    expect(gaps.finish(1, 400, PRIOR)).toEqual({ firstGap: 101 });
    const start = new ChainLinks(10);
    add(start, 5, 400);
    expect(start.finish(1, 400, PRIOR)).toEqual({ firstGap: 1 });
    const tail = new ChainLinks(10);
    add(tail, 1, 390);
    expect(tail.finish(1, 400, PRIOR)).toEqual({ missingTailFrom: 391 });
    expect(new ChainLinks(10).finish(1, 400, PRIOR)).toEqual({ missingTailFrom: 1 });
  });

  it('stops holding runs past its limit and says so', () => {
    const links = new ChainLinks(3);
    for (const start of [1, 11, 21, 31]) {
      add(links, start, start + 5);
    }
    expect(links.overflowed).toBe(true);
    expect(() => links.finish(1, 40, PRIOR)).toThrow(/position order/);
  });
});
