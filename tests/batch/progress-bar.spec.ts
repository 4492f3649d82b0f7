import { formatDuration, ProgressBar, type ProgressOutput } from '../../services/platform/cli/progress-bar';

class Capture implements ProgressOutput {
  text = '';
  constructor(
    readonly isTTY: boolean,
    readonly columns = 80,
  ) {}
  write(chunk: string) {
    this.text += chunk;
    return true;
  }
}

describe('ProgressBar', () => {
  test('on a terminal it redraws one line in place, within the width, and ends with a newline', () => {
    const out = new Capture(true, 60);
    const bar = new ProgressBar({ output: out, label: 'b1' });
    bar.update({ done: 0, total: 1000 });
    bar.update({ done: 500, total: 1000, detail: 'ok 500', etaSeconds: 65 });
    bar.finish({ done: 1000, total: 1000, detail: 'ok 1000' }, 'done');
    const frames = out.text.split('\r').filter(Boolean);
    expect(frames).toHaveLength(3);
    expect(frames[1]).toContain('50.0% 500/1,000');
    expect(frames[1]).toContain('ETA 1:05');
    for (const frame of frames) expect(frame.split('\x1b[K')[0].length).toBeLessThanOrEqual(59);
    expect(out.text.endsWith('\ndone\n')).toBe(true);
  });

  test('on a wide terminal the bar keeps its width while the text changes', () => {
    const out = new Capture(true, 140);
    const bar = new ProgressBar({ output: out, label: 'b1' });
    bar.update({ done: 250, total: 1000, detail: 'ok 250', etaSeconds: 12 });
    bar.update({ done: 1000, total: 1000, detail: 'ok 1,000  skipped 0  failed 0' });
    const bars = out.text.split('\r').filter(Boolean).map((f) => /\[([█░]+)\]/.exec(f)![1]);
    expect(bars.map((b) => b.length)).toEqual([30, 30]);
    expect(bars[0]).toBe('█'.repeat(8) + '░'.repeat(22));
    expect(bars[1]).toBe('█'.repeat(30));
  });

  test('without a terminal it writes plain throttled lines without control characters, and always the final state', () => {
    const out = new Capture(false);
    let now = 0;
    const bar = new ProgressBar({ output: out, label: 'b2', lineIntervalMs: 1000, now: () => now });
    bar.update({ done: 1, total: 10 });
    now = 100;
    bar.update({ done: 2, total: 10 }); // throttled
    now = 1200;
    bar.update({ done: 3, total: 10 });
    now = 1300;
    bar.update({ done: 9, total: 10 }); // throttled, but finish writes the final state
    bar.finish(undefined, 'batch b2: SUCCEEDED');
    expect(out.text).not.toMatch(/[\r\x1b]/);
    expect(out.text.split('\n').filter(Boolean)).toEqual(['b2  10.0% 1/10', 'b2  30.0% 3/10', 'b2  90.0% 9/10', 'batch b2: SUCCEEDED']);
  });

  test('unknown totals show counts only; durations format as m:ss or h:mm:ss', () => {
    const out = new Capture(false);
    const bar = new ProgressBar({ output: out });
    bar.update({ done: 1234, total: 0 });
    expect(out.text).toBe('1,234\n');
    expect([formatDuration(5), formatDuration(125), formatDuration(3723)]).toEqual(['0:05', '2:05', '1:02:03']);
  });
});
