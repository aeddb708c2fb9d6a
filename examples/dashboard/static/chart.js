// A small line chart on a canvas: the last N samples of a few series.
export class Chart {
  constructor(canvas, series, size = 60) {
    this.canvas = canvas;
    this.series = series;           // [{key, color, label}]
    this.size = size;
    this.data = series.map(() => []);
  }

  push(sample) {
    this.series.forEach((s, i) => {
      const values = this.data[i];
      values.push(Number(sample[s.key]) || 0);
      if (values.length > this.size) values.shift();
    });
    this.draw();
  }

  draw() {
    const c = this.canvas, g = c.getContext("2d");
    const w = c.width, h = c.height, pad = 18;
    g.clearRect(0, 0, w, h);
    g.strokeStyle = "#e3e6ea";
    g.beginPath(); g.moveTo(0, h - pad); g.lineTo(w, h - pad); g.stroke();
    this.series.forEach((s, i) => {
      const values = this.data[i];
      const top = Math.max(1, ...values);
      g.strokeStyle = s.color; g.lineWidth = 2; g.beginPath();
      values.forEach((v, j) => {
        const x = (j / (this.size - 1)) * w;
        const y = h - pad - (v / top) * (h - 2 * pad);
        if (j === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
      g.fillStyle = s.color; g.font = "12px sans-serif";
      g.fillText(`${s.label} (max ${top.toFixed(1)})`, 6 + i * 170, 12);
    });
  }
}
