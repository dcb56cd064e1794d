import { describe, expect, it } from 'vitest';
import { Backoff } from '../../../src/connection/backoff.js';

describe('Backoff', () => {
  it('doubles the ceiling each attempt up to the cap', () => {
    const b = new Backoff(100, 1000, () => 0.999999);
    const ceilings: number[] = [];
    for (let i = 0; i < 6; i++) {
      ceilings.push(b.ceiling());
      b.next();
    }
    expect(ceilings).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('draws each delay uniformly below the ceiling (full jitter)', () => {
    const draws = [0, 0.5, 0.25];
    const b = new Backoff(100, 10_000, () => draws.shift()!);
    expect(b.next()).toBe(0);
    expect(b.next()).toBe(100); // 0.5 * 200
    expect(b.next()).toBe(100); // 0.25 * 400
  });

  it('never exceeds the cap even after many attempts', () => {
    const b = new Backoff(500, 30_000);
    let max = 0;
    for (let i = 0; i < 2000; i++) max = Math.max(max, b.next());
    expect(max).toBeLessThan(30_000);
    expect(b.ceiling()).toBe(30_000);
  });

  it('starts over after reset', () => {
    const b = new Backoff(100, 1000, () => 0.5);
    b.next();
    b.next();
    b.reset();
    expect(b.ceiling()).toBe(100);
  });

  it('refuses a cap below the first delay', () => {
    expect(() => new Backoff(100, 50)).toThrow(RangeError);
  });
});
