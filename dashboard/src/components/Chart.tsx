// A time chart (uPlot). Labels and values are ours (series names, numbers): nothing a
// chat user wrote is drawn here.

import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Series {
  label: string;
  /** A CSS colour of ours. */
  color: string;
  values: number[];
}

interface Props {
  title: string;
  /** Bucket starts (ISO instants). */
  starts: string[];
  /** The length of a bucket in seconds: each value is drawn flat across its bucket. */
  bucket: number;
  series: Series[];
  tz: string;
  height?: number;
}

export function Chart({ title, starts, series, bucket, tz, height = 220 }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = series.map((s) => s.label).join('|') + '|' + tz;

  // Made again when the series or the zone change; fed new data otherwise.
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), tz),
      scales: { x: { time: true } },
      // A canvas knows no currentColor: the axes take the text colour of the page.
      axes: [{ ...axis(getComputedStyle(el).color), space: 70 }, axis(getComputedStyle(el).color)],
      // The legend names the series; values show while the pointer is over the chart.
      legend: { live: false },
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          fill: s.color + '22',
          // A count belongs to its whole bucket: a step, not a slope between starts.
          paths: uPlot.paths.stepped?.({ align: 1 }),
          points: { show: false },
        })),
      ],
    };
    const p = new uPlot(opts, data(starts, series, bucket), el);
    plot.current = p;
    const resize = new ResizeObserver(() => p.setSize({ width: Math.max(200, el.clientWidth), height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      p.destroy();
      plot.current = null;
    };
  }, [shape, height]);

  useEffect(() => {
    plot.current?.setData(data(starts, series, bucket));
  }, [starts, series, bucket]);

  const totals = series.map((s) => `${s.label}: ${s.values.reduce((a, b) => a + b, 0)}`).join(', ');
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} role="img" aria-label={`${title}. Totals: ${totals}`} />
    </figure>
  );
}

function axis(color: string): uPlot.Axis {
  return { stroke: color, grid: { stroke: 'rgba(127,127,127,0.18)' }, ticks: { stroke: 'rgba(127,127,127,0.18)' } };
}

/** x: each bucket's start and, last, the end of the last bucket (so it has a width). */
function data(starts: string[], series: Series[], bucket: number): uPlot.AlignedData {
  const xs = starts.map((s) => new Date(s).getTime() / 1000);
  const end = xs.length ? [xs[xs.length - 1]! + bucket] : [];
  return [[...xs, ...end], ...series.map((s) => (s.values.length ? [...s.values, s.values[s.values.length - 1]!] : []))];
}
