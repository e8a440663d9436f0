// Watch it think: draw a digit, see every layer of the network light up.
// Everything runs here, offline: the weights are in the page, and nothing is fetched.
// draw.py inlines this file and draw_page_learn.js (backprop, SGD, training) in one scope.
  const NET = JSON.parse(document.getElementById("network").textContent);
  const SIDE = 28; // MNIST images are 28x28 ...
  const BOX = 20; // ... with the digit scaled to fit 20x20 ...
  const CENTRE = 14; // ... and its centre of mass at pixel (14, 14)
  const f32 = Math.fround; // predict.py works in float32: so does the conversion here
  const INK = f32(0.1); // brighter than this (after background removal): part of the digit
  const MIN_CONTRAST = 0.05; // less contrast than this: a blank image
  const LUMA = [f32(0.299), f32(0.587), f32(0.114)]; // ITU-R 601-2, as predict.py
  const STROKE = 21; // pen width on the 280 px canvas: MNIST's stroke once fitted to 20x20
  const MAX_DRAWN = 32; // a wider layer is drawn as its first neurons and a count
  const SHOWN_OF_WIDE = 30;
  const TOP_K = 8; // connections drawn into each neuron: its strongest contributions w·a
  const TOP_K_SELECTED = 40; // ... and into the neuron whose panel is open
  const BIAS_RANGE = 10; // the slider moves a bias this far either way from its trained value
  const COLOURS = {
    pos: [77, 141, 255], neg: [255, 82, 82], answer: "#ffd54a", selected: "#c792ff",
  };

  // --- the network: weights as float32 in the page, arithmetic in float64 ---------------

  function bytes(base64) {
    const text = atob(base64);
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
    return out;
  }

  function float32s(base64) {
    const b = bytes(base64);
    const view = new DataView(b.buffer);
    const out = new Float64Array(b.length / 4);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true); // little-endian
    return out;
  }

  // The network the page shows, set by useNetwork: the one in the page, or one opened from a
  // file (draw_page_network2.js). ``sizes``: neurons per layer; L: layers of weights; the
  // trained network, and the page's own copy that the learner changes in place (switch-offs,
  // biases, SGD steps, training): weights[l][j * sizes[l] + i], neuron j, input i; off[l][j]:
  // 1 for a switched-off neuron; ``activation``: the hidden layers' function, as backprop.py's,
  // "sigmoid" (the book's) or "relu", the output layer σ either way (outputs in (0, 1)).
  let sizes, L, trainedWeights, trainedBiases, weights, biases, off, activation, RELU;

  /** Make ``network`` ({sizes, weights, biases, activation}, float64 arrays laid out as
   * above) the page's trained network, and a copy of it the one the learner changes. */
  function useNetwork(network) {
    sizes = network.sizes;
    L = sizes.length - 1;
    trainedWeights = network.weights;
    trainedBiases = network.biases;
    weights = trainedWeights.map((w) => Float64Array.from(w));
    biases = trainedBiases.map((b) => Float64Array.from(b));
    off = sizes.slice(1).map((n) => new Uint8Array(n));
    activation = network.activation;
    RELU = activation === "relu";
  }

  useNetwork({
    sizes: NET.sizes,
    weights: NET.weights.map(float32s),
    biases: NET.biases.map(float32s),
    activation: NET.activation || "sigmoid",
  });

  const sigmoid = (z) => 1 / (1 + Math.exp(-z));
  const relu = (z) => Math.max(0, z); // ReLU(z) = max(0, z)

  /** Is the layer that weights[l] feeds (zs[l], a[l + 1]) a ReLU layer? Only a hidden one. */
  const isRelu = (l) => RELU && l < L - 1;

  /** aˡ = f(zˡ) of the layer that weights[l] feeds: ReLU for a hidden layer of a ReLU
   * network, else σ. */
  const activate = (l, z) => (isRelu(l) ? relu(z) : sigmoid(z));

  /** f'(z) of the layer that weights[l] feeds, as backprop.activation_prime:
   * ReLU'(z) = 1 where z > 0, else 0; σ'(z) = σ(z)(1 − σ(z)). */
  function activationPrime(l, z) {
    if (isRelu(l)) return z > 0 ? 1 : 0;
    const s = sigmoid(z);
    return s * (1 - s);
  }

  /** The name of the layer's function, for the panels: "ReLU" or "σ". */
  const activationName = (l) => (isRelu(l) ? "ReLU" : "σ");

  /** The index of the largest value: the network's answer, for the output layer. */
  function argmax(values) {
    let best = 0;
    for (let j = 1; j < values.length; j++) if (values[j] > values[best]) best = j;
    return best;
  }

  /** A number as the page writes it everywhere: a true minus sign, fixed decimals. */
  const fmt = (v, digits = 4) =>
    Number.isNaN(v) ? "NaN" : (v < 0 ? "−" : "") + Math.abs(v).toFixed(digits);

  /** a⁽ˡ⁺¹⁾ = f(W⁽ˡ⁾ a⁽ˡ⁾ + b⁽ˡ⁾), layer by layer, f = σ or ReLU (``activate``); a
   * switched-off neuron's activation is 0. */
  function forward(x) {
    const a = [Float64Array.from(x)];
    const sums = []; // Σ w·a of every neuron, without its bias
    const zs = [];
    for (let l = 0; l < L; l++) {
      const nIn = sizes[l], nOut = sizes[l + 1], w = weights[l], prev = a[l];
      const s = new Float64Array(nOut), z = new Float64Array(nOut), act = new Float64Array(nOut);
      for (let j = 0; j < nOut; j++) {
        let sum = 0;
        const row = j * nIn;
        for (let i = 0; i < nIn; i++) sum += w[row + i] * prev[i];
        s[j] = sum;
        z[j] = sum + biases[l][j];
        act[j] = off[l][j] ? 0 : activate(l, z[j]);
      }
      sums.push(s);
      zs.push(z);
      a.push(act);
    }
    return { a, zs, sums };
  }

  // --- the drawing as MNIST pixels, exactly as mlp_digits/predict.py converts an image ----

  /** numpy's median: the middle value, or the mean of the two middle ones, in float32. */
  function median(values) {
    const v = Float32Array.from(values).sort();
    const m = v.length >> 1;
    return v.length % 2 ? v[m] : f32((v[m - 1] + v[m]) / 2);
  }

  function border(gray, w, h) {
    const out = [];
    for (let c = 0; c < w; c++) out.push(gray[c]); // top row
    for (let c = 0; c < w; c++) out.push(gray[(h - 1) * w + c]); // bottom row
    for (let r = 0; r < h; r++) out.push(gray[r * w]); // left column
    for (let r = 0; r < h; r++) out.push(gray[r * w + w - 1]); // right column
    return out;
  }

  /** Brightness in [0, 1] of opaque RGBA pixels: (R, G, B)/255 · LUMA, in float32. */
  function grayscale(rgba, w, h) {
    const gray = new Float32Array(w * h);
    for (let p = 0, q = 0; p < gray.length; p++, q += 4) {
      const r = f32(rgba[q] / 255), g = f32(rgba[q + 1] / 255), b = f32(rgba[q + 2] / 255);
      gray[p] = f32(f32(f32(r * LUMA[0]) + f32(g * LUMA[1])) + f32(b * LUMA[2]));
    }
    return gray;
  }

  /** The digit as ink in [0, 1] on a background of 0, or null when there is no digit. */
  function whiteOnBlack(gray, w, h) {
    if (median(border(gray, w, h)) > 0.5) gray = gray.map((v) => f32(1 - v));
    const background = median(border(gray, w, h));
    let peak = -Infinity;
    for (const v of gray) peak = Math.max(peak, v);
    if (peak - background < MIN_CONTRAST) return null;
    const range = f32(peak - background);
    return gray.map((v) => Math.min(Math.max(f32(f32(v - background) / range), 0), 1));
  }

  /** Python's round(): halves go to the even neighbour. */
  function roundHalfEven(x) {
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  /** Pillow's Lanczos filter (a = 3) as its Resample.c computes one axis's coefficients. */
  function lanczos(x) {
    const sinc = (t) => (t === 0 ? 1 : Math.sin(Math.PI * t) / (Math.PI * t));
    return x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0;
  }

  function coefficients(nIn, nOut) {
    const scale = nIn / nOut;
    const filterScale = Math.max(scale, 1); // shrinking widens the kernel: an average
    const support = 3 * filterScale;
    const rows = [];
    for (let o = 0; o < nOut; o++) {
      const centre = (o + 0.5) * scale;
      const first = Math.max(Math.trunc(centre - support + 0.5), 0);
      const end = Math.min(Math.trunc(centre + support + 0.5), nIn);
      const k = [];
      let total = 0;
      for (let i = first; i < end; i++) {
        const v = lanczos((i - centre + 0.5) / filterScale);
        k.push(v);
        total += v;
      }
      rows.push({ first, k: total !== 0 ? k.map((v) => v / total) : k });
    }
    return rows;
  }

  /** Image.resize(..., LANCZOS) of a float32 image: rows first, then columns, as Pillow. */
  function resize(src, w, h, outW, outH) {
    if (outW !== w) {
      const cs = coefficients(w, outW);
      const tmp = new Float32Array(outW * h);
      for (let r = 0; r < h; r++) {
        for (let o = 0; o < outW; o++) {
          const { first, k } = cs[o];
          let s = 0;
          for (let i = 0; i < k.length; i++) s += src[r * w + first + i] * k[i];
          tmp[r * outW + o] = s;
        }
      }
      src = tmp;
      w = outW;
    }
    if (outH !== h) {
      const cs = coefficients(h, outH);
      const tmp = new Float32Array(w * outH);
      for (let o = 0; o < outH; o++) {
        const { first, k } = cs[o];
        for (let c = 0; c < w; c++) {
          let s = 0;
          for (let i = 0; i < k.length; i++) s += src[(first + i) * w + c] * k[i];
          tmp[o * w + c] = s;
        }
      }
      src = tmp;
    }
    return src;
  }

  /** The ink cropped to its bounding box and scaled so that its longer side is 20 pixels. */
  function fitBox(ink, w, h) {
    let top = h, bottom = -1, left = w, right = -1;
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        if (ink[r * w + c] > INK) {
          top = Math.min(top, r);
          bottom = Math.max(bottom, r);
          left = Math.min(left, c);
          right = Math.max(right, c);
        }
      }
    }
    if (bottom < 0) return null;
    const ch = bottom - top + 1, cw = right - left + 1;
    const crop = new Float32Array(ch * cw);
    for (let r = 0; r < ch; r++) {
      for (let c = 0; c < cw; c++) crop[r * cw + c] = ink[(top + r) * w + left + c];
    }
    const scale = BOX / Math.max(ch, cw);
    const bw = Math.max(1, roundHalfEven(cw * scale)), bh = Math.max(1, roundHalfEven(ch * scale));
    const box = resize(crop, cw, ch, bw, bh).map((v) => Math.min(Math.max(v, 0), 1));
    return { box, bw, bh };
  }

  /** The box pasted into 28x28 so that its centre of mass lands on pixel (14, 14). */
  function centreByMass({ box, bw, bh }) {
    const field = new Float64Array(SIDE * SIDE);
    let mass = 0, rowMass = 0, colMass = 0;
    for (let r = 0; r < bh; r++) {
      for (let c = 0; c < bw; c++) {
        const v = box[r * bw + c];
        mass += v;
        rowMass += r * v;
        colMass += c * v;
      }
    }
    if (mass <= 0) return field;
    const top = Math.floor(CENTRE - rowMass / mass + 0.5);
    const left = Math.floor(CENTRE - colMass / mass + 0.5);
    for (let r = Math.max(top, 0); r < Math.min(top + bh, SIDE); r++) {
      for (let c = Math.max(left, 0); c < Math.min(left + bw, SIDE); c++) {
        field[r * SIDE + c] = box[(r - top) * bw + (c - left)];
      }
    }
    return field;
  }

  /** RGBA pixels (opaque) of any size as MNIST's 784 inputs in [0, 1]; blank: all zeros. */
  function toMnist(rgba, w, h) {
    const ink = whiteOnBlack(grayscale(rgba, w, h), w, h);
    const box = ink && fitBox(ink, w, h);
    return box ? centreByMass(box) : new Float64Array(SIDE * SIDE);
  }

  // --- the drawing canvas: strokes of mouse, pen or touch --------------------------------

  const drawCanvas = document.getElementById("draw");
  const drawCtx = drawCanvas.getContext("2d", { willReadFrequently: true });
  let strokes = []; // each a list of [x, y] in canvas pixels
  let pen = null; // the pointer drawing now: { id, stroke }
  let input = new Float64Array(SIDE * SIDE);
  let preset = null; // a test digit, noise or blank: { label, pixels } shown instead of strokes
  let needsConversion = false;
  let needsUpdate = true;

  function paintStrokes() {
    drawCtx.fillStyle = "#000";
    drawCtx.fillRect(0, 0, drawCanvas.width, drawCanvas.height);
    drawCtx.strokeStyle = drawCtx.fillStyle = "#fff";
    drawCtx.lineWidth = STROKE;
    drawCtx.lineCap = drawCtx.lineJoin = "round";
    for (const s of strokes) {
      drawCtx.beginPath();
      if (s.length === 1) {
        drawCtx.arc(s[0][0], s[0][1], STROKE / 2, 0, 2 * Math.PI);
        drawCtx.fill();
        continue;
      }
      drawCtx.moveTo(s[0][0], s[0][1]);
      for (let i = 1; i < s.length; i++) drawCtx.lineTo(s[i][0], s[i][1]);
      drawCtx.stroke();
    }
  }

  function paintPreset(pixels) {
    const small = document.createElement("canvas");
    small.width = small.height = SIDE;
    small.getContext("2d").putImageData(grayImage(pixels), 0, 0);
    drawCtx.imageSmoothingEnabled = false;
    drawCtx.drawImage(small, 0, 0, drawCanvas.width, drawCanvas.height);
  }

  function grayImage(pixels) {
    const image = new ImageData(SIDE, SIDE);
    for (let p = 0; p < SIDE * SIDE; p++) {
      const v = Math.round(255 * Math.min(Math.max(pixels[p], 0), 1));
      image.data.set([v, v, v, 255], 4 * p);
    }
    return image;
  }

  function canvasPoint(e) {
    const rect = drawCanvas.getBoundingClientRect();
    return [
      ((e.clientX - rect.left) * drawCanvas.width) / rect.width,
      ((e.clientY - rect.top) * drawCanvas.height) / rect.height,
    ];
  }

  drawCanvas.addEventListener("pointerdown", (e) => {
    if (pen || (e.pointerType === "mouse" && e.button !== 0)) return;
    e.preventDefault();
    drawCanvas.setPointerCapture(e.pointerId);
    if (preset) setPreset(null); // drawing over a test digit starts a new drawing
    pen = { id: e.pointerId, stroke: [canvasPoint(e)] };
    strokes.push(pen.stroke);
    drawingChanged();
  });
  drawCanvas.addEventListener("pointermove", (e) => {
    if (!pen || e.pointerId !== pen.id) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    for (const ev of events.length ? events : [e]) pen.stroke.push(canvasPoint(ev));
    drawingChanged();
  });
  const endStroke = (e) => {
    if (pen && e.pointerId === pen.id) pen = null;
  };
  drawCanvas.addEventListener("pointerup", endStroke);
  drawCanvas.addEventListener("pointercancel", endStroke);

  function drawingChanged() {
    needsConversion = true;
    schedule();
  }

  function undo() {
    if (preset || pen || !strokes.length) return;
    strokes.pop();
    drawingChanged();
  }

  function clear() {
    setPreset(null);
    strokes = [];
    drawingChanged();
  }

  function setPreset(p) {
    preset = p;
    if (p) {
      strokes = [];
      pen = null;
      input = Float64Array.from(p.pixels);
      paintStrokes();
      paintPreset(p.pixels);
      needsConversion = false;
    } else {
      needsConversion = true;
    }
    document.getElementById("source").textContent = p ? p.label : "Input: your drawing.";
    chosenLabel = null; // a new input: its y is its true label, or the network's answer
    schedule();
  }

  document.getElementById("undo").onclick = undo;
  document.getElementById("clear").onclick = clear;
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "z") {
      e.preventDefault();
      undo();
    }
  });
  document.getElementById("noise").onclick = () => {
    const pixels = Float64Array.from({ length: SIDE * SIDE }, () => Math.random());
    const output = forward(pixels).a[L];
    const top = argmax(output);
    setPreset({
      pixels,
      label: `Input: random noise. The network still answers: ${top}, with a = ` +
        `${output[top].toFixed(2)} (a sure answer is near 1; try a few).`,
    });
  };
  document.getElementById("blank").onclick = () =>
    setPreset({ pixels: new Float64Array(SIDE * SIDE), label: "Input: blank, all zeros." });

  // The real test digits of the page, each a button with its picture and label.
  const examples = NET.examples.map((ex) => ({
    ...ex,
    pixels: Float64Array.from(bytes(ex.pixels), (v) => v / 255),
  }));
  const exampleBox = document.getElementById("examples");
  for (const ex of examples) {
    const button = document.createElement("button");
    const thumb = document.createElement("canvas");
    thumb.width = thumb.height = SIDE;
    thumb.getContext("2d").putImageData(grayImage(ex.pixels), 0, 0);
    ex.button = button;
    button.append(thumb, document.createElement("span"));
    button.onclick = () => showExample(ex);
    exampleBox.append(button);
  }
  captionExamples();

  /** Each test digit's caption: its label, and in red the answer when that is wrong. The
   * answers are Python's when the page opens, the page's own once the network changes. */
  function captionExamples() {
    for (const ex of examples) {
      const wrong = ex.predicted !== ex.label;
      ex.button.lastChild.textContent = wrong ? `${ex.label}→${ex.predicted}` : `${ex.label}`;
      ex.button.className = wrong ? "wrong" : "";
      ex.button.title = `test image #${ex.index}: a ${ex.label}` +
        (wrong ? `, which the network reads as ${ex.predicted}` : "");
    }
  }
  function showExample(ex) {
    setPreset({
      pixels: ex.pixels,
      digit: ex.label,
      label: `Input: test image #${ex.index}, a ${ex.label}.`,
    });
  }
  document.getElementById("examples-note").textContent = examples.length
    ? "A red caption (true→answer) marks a digit the network gets wrong."
    : "No test digits in this page (build it with --data-dir pointing at MNIST).";

  // A ReLU network says so under its picture: its hidden layers are drawn on their own scale.
  document.getElementById("key-relu").hidden = !RELU;

  // --- the network picture ----------------------------------------------------------------

  const net = document.getElementById("net");
  const ctx = net.getContext("2d");
  const NET_W = net.width, NET_H = net.height;
  const dpr = window.devicePixelRatio || 1;
  net.width = NET_W * dpr;
  net.height = NET_H * dpr;
  ctx.scale(dpr, dpr);
  const PIXEL = 7; // the 28x28 input drawn 7 px a pixel
  const INPUT_X = 10, INPUT_Y = (NET_H - SIDE * PIXEL) / 2;
  const inputCanvas = document.createElement("canvas");
  inputCanvas.width = inputCanvas.height = SIDE;
  const inputCtx = inputCanvas.getContext("2d");

  /** Where each drawn neuron of the network sits: layout[l] for layer l >= 1 (l = 0 is the
   * input picture), the columns evenly apart between the input and the answers. */
  function layOut() {
    const layout = [null];
    const firstX = INPUT_X + SIDE * PIXEL + 140, lastX = NET_W - 80;
    const gap = L > 1 ? (lastX - firstX) / (L - 1) : Infinity; // between columns
    for (let l = 1; l <= L; l++) {
      const n = sizes[l];
      const shown = n > MAX_DRAWN ? SHOWN_OF_WIDE : n;
      const x = L === 1 ? lastX : firstX + gap * (l - 1);
      const spacing = Math.min(l === L ? 50 : 34, (NET_H - 90) / shown);
      const r = Math.min(l === L ? 16 : 12, spacing * 0.4, gap * 0.4); // many layers: smaller
      const top = NET_H / 2 - (spacing * (shown - 1)) / 2 + (n > shown ? -10 : 0);
      const ys = Array.from({ length: shown }, (_, j) => top + j * spacing);
      layout.push({ x, ys, r, shown, hidden: n - shown });
    }
    return layout;
  }
  let layout = layOut();

  function rgba([r, g, b], alpha) {
    return `rgba(${r},${g},${b},${alpha.toFixed(3)})`;
  }

  /** The strongest contributions w·a into each drawn neuron of layer l: [from, to, value]. */
  function connections(l, state) {
    const nIn = sizes[l - 1], w = weights[l - 1], prev = state.a[l - 1];
    const fromShown = l === 1 ? nIn : layout[l - 1].shown;
    const lines = [];
    for (let j = 0; j < layout[l].shown; j++) {
      const k = selected && selected.l === l && selected.j === j ? TOP_K_SELECTED : TOP_K;
      const best = []; // the k largest |w·a| so far, smallest first
      for (let i = 0; i < fromShown; i++) {
        const c = w[j * nIn + i] * prev[i];
        if (c === 0 || (best.length === k && Math.abs(c) <= Math.abs(best[0][2]))) continue;
        if (best.length === k) best.shift(); // the weakest of the k makes room
        let p = 0;
        while (p < best.length && Math.abs(best[p][2]) < Math.abs(c)) p++;
        best.splice(p, 0, [i, j, c]);
      }
      lines.push(...best);
    }
    return lines;
  }

  function sourcePoint(l, i) {
    if (l === 1) {
      return [INPUT_X + ((i % SIDE) + 0.5) * PIXEL, INPUT_Y + (Math.floor(i / SIDE) + 0.5) * PIXEL];
    }
    const { x, ys, r } = layout[l - 1];
    return [x + r, ys[i]];
  }

  let drawnLines = []; // [l, i, j, x0, y0, x1, y1] of every connection drawn: for clicks

  function drawConnections(state) {
    ctx.lineCap = "round";
    drawnLines = [];
    for (let l = 1; l <= L; l++) {
      const lines = showing === "backprop" ? nudges(l) : connections(l, state);
      let biggest = 0;
      for (const [, , c] of lines) biggest = Math.max(biggest, Math.abs(c));
      const { x, ys, r } = layout[l];
      for (const [i, j, c] of lines) {
        const strength = Math.abs(c) / biggest;
        const [x0, y0] = sourcePoint(l, i);
        ctx.strokeStyle = rgba(c > 0 ? COLOURS.pos : COLOURS.neg, 0.15 + 0.85 * strength);
        ctx.lineWidth = 0.5 + 2.5 * strength;
        ctx.beginPath();
        ctx.moveTo(x0, y0);
        ctx.lineTo(x - r, ys[j]);
        ctx.stroke();
        drawnLines.push([l, i, j, x0, y0, x - r, ys[j]]);
      }
    }
  }

  function drawInput() {
    inputCtx.putImageData(grayImage(input), 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(inputCanvas, INPUT_X, INPUT_Y, SIDE * PIXEL, SIDE * PIXEL);
    ctx.strokeStyle = "#3a4252";
    ctx.lineWidth = 1;
    ctx.strokeRect(INPUT_X - 0.5, INPUT_Y - 0.5, SIDE * PIXEL + 1, SIDE * PIXEL + 1);
  }

  /** The activation drawn white in layer l >= 1: 1 for σ, whose a lies in (0, 1); a ReLU's
   * a = max(0, z) has no top, so its layer is drawn on its largest a for this input. */
  function brightest(state, l) {
    if (!isRelu(l - 1)) return 1;
    let top = 0;
    for (const v of state.a[l]) top = Math.max(top, v);
    return top;
  }

  function drawNeurons(state) {
    const output = state.a[L];
    const answer = argmax(output);
    ctx.textBaseline = "middle";
    for (let l = 1; l <= L; l++) {
      const { x, ys, r, shown, hidden } = layout[l];
      const white = brightest(state, l) || 1; // all a = 0: all black
      for (let j = 0; j < shown; j++) {
        const v = Math.round(255 * Math.min(state.a[l][j] / white, 1));
        ctx.beginPath();
        ctx.arc(x, ys[j], r, 0, 2 * Math.PI);
        ctx.fillStyle = `rgb(${v},${v},${v})`;
        ctx.fill();
        const isAnswer = l === L && j === answer;
        const isSelected = selected && selected.l === l && selected.j === j;
        const changed = off[l - 1][j] || biases[l - 1][j] !== trainedBiases[l - 1][j];
        ctx.lineWidth = isAnswer || isSelected ? 3 : 1;
        ctx.strokeStyle = isAnswer ? COLOURS.answer : isSelected ? COLOURS.selected : "#5a6272";
        ctx.setLineDash(changed ? [3, 3] : []);
        ctx.stroke();
        ctx.setLineDash([]);
        if (isAnswer && isSelected) { // the answer's ring stays; the selection rings it
          ctx.beginPath();
          ctx.arc(x, ys[j], r + 4, 0, 2 * Math.PI);
          ctx.strokeStyle = COLOURS.selected;
          ctx.stroke();
        }
        if (showing === "backprop") drawDelta(l, j, x, ys[j], r);
        if (off[l - 1][j]) {
          ctx.strokeStyle = "#ff5252";
          ctx.lineWidth = 2;
          ctx.beginPath();
          ctx.moveTo(x - r * 0.6, ys[j] - r * 0.6);
          ctx.lineTo(x + r * 0.6, ys[j] + r * 0.6);
          ctx.stroke();
        }
        if (l === L) {
          ctx.font = isAnswer ? "bold 22px system-ui, sans-serif" : "18px system-ui, sans-serif";
          ctx.fillStyle = isAnswer ? COLOURS.answer : "#e6e9ef";
          ctx.textAlign = "left";
          ctx.fillText(String(j), x + r + 10, ys[j]);
          ctx.font = "12px ui-monospace, Menlo, Consolas, monospace";
          ctx.fillStyle = isAnswer ? COLOURS.answer : "#8b93a3";
          ctx.fillText(state.a[l][j].toFixed(2), x + r + 30, ys[j]);
        }
      }
      if (hidden > 0) {
        ctx.font = "12px system-ui, sans-serif";
        ctx.fillStyle = "#8b93a3";
        ctx.textAlign = "center";
        ctx.fillText(`+ ${hidden} more`, x, ys[shown - 1] + 2 * r + 6);
      }
    }
  }

  function drawTitles(state) {
    ctx.font = "13px system-ui, sans-serif";
    ctx.fillStyle = "#8b93a3";
    ctx.textAlign = "center";
    ctx.textBaseline = "alphabetic";
    const middle = INPUT_X + (SIDE * PIXEL) / 2;
    ctx.fillText("what the network sees:", middle, INPUT_Y - 28);
    ctx.fillText("784 inputs (28×28)", middle, INPUT_Y - 10);
    const room = L > 1 ? layout[2].x - layout[1].x - 8 : Infinity; // between columns
    for (let l = 1; l <= L; l++) {
      const name = l === L ? "output" : `hidden ${l}`;
      if (ctx.measureText(`${name} (${sizes[l]})`).width <= room) {
        ctx.fillText(`${name} (${sizes[l]})`, layout[l].x, 18);
      } else { // columns too close for one line: the name above the size, short if need be
        const fits = ctx.measureText(name).width <= room;
        ctx.fillText(fits ? name : l === L ? "out" : `h${l}`, layout[l].x, 12);
        ctx.fillText(`(${sizes[l]})`, layout[l].x, 27);
      }
      if (isRelu(l - 1)) { // the key to a ReLU layer's brightness, under it
        const white = brightest(state, l);
        ctx.font = "11px system-ui, sans-serif";
        const long = ctx.measureText("ReLU: brightness").width <= room; // else the short key
        ctx.fillText(long ? "ReLU: brightness" : "ReLU", layout[l].x, NET_H - 24);
        const scale = white > 0 ? `a / ${white.toPrecision(3)}` : "all a = 0";
        ctx.fillText(long && white > 0 ? `= ${scale}` : scale, layout[l].x, NET_H - 10);
        ctx.font = "13px system-ui, sans-serif";
      }
    }
    if (showing === "backprop") drawBackpropKey();
  }

  function drawNetwork(state) {
    ctx.fillStyle = "#0d0f14";
    ctx.fillRect(0, 0, NET_W, NET_H);
    drawConnections(state);
    drawInput(); // over the connections' ends: they come out of their pixels' rows
    drawNeurons(state);
    drawTitles(state);
  }

  /** The drawn connection within 4 px of canvas point (x, y), or null: { l, j, i }. */
  function connectionAt(x, y) {
    let best = null, bestDistance = 4;
    for (const [l, i, j, x0, y0, x1, y1] of drawnLines) {
      const dx = x1 - x0, dy = y1 - y0;
      const t = Math.min(Math.max(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0), 1);
      const distance = Math.hypot(x - x0 - t * dx, y - y0 - t * dy);
      if (distance < bestDistance) [best, bestDistance] = [{ l, j, i }, distance];
    }
    return best;
  }

  /** The drawn neuron at canvas point (x, y), or null. */
  function neuronAt(x, y) {
    for (let l = 1; l <= L; l++) {
      const { x: cx, ys, r } = layout[l];
      for (let j = 0; j < ys.length; j++) {
        if ((x - cx) ** 2 + (y - ys[j]) ** 2 <= (r + 4) ** 2) return { l, j };
      }
    }
    return null;
  }

  net.addEventListener("pointerdown", (e) => {
    const rect = net.getBoundingClientRect();
    const x = ((e.clientX - rect.left) * NET_W) / rect.width;
    const y = ((e.clientY - rect.top) * NET_H) / rect.height;
    const hit = neuronAt(x, y);
    if (hit) select(hit.l, hit.j);
    else {
      const line = connectionAt(x, y);
      if (line) select(line.l, line.j, line.i);
    }
  });

  // --- the panel of one neuron: its weighted input, weights, and the controls to change it

  let selected = null; // { l, j }: layer l >= 1, neuron j
  const $ = (id) => document.getElementById(id);
  const biasSlider = $("n-bias");

  /** Open the panel of neuron j of layer l; ``i``: the input whose weight the chain rule
   * and the landscape follow (default: its strongest contribution w·a now). */
  function select(l, j, i) {
    selected = { l, j };
    chooseWeight(l, j, i);
    $("hint").hidden = true;
    $("neuron").hidden = false;
    $("n-title").textContent =
      l === L ? `Output neuron ${j} (the digit ${j})` : `Hidden layer ${l}, neuron ${j}`;
    $("n-pictures").hidden = l !== 1;
    $("n-bars").hidden = l === 1;
    $("n-grad-picture").hidden = l !== 1;
    $("n-f").textContent = isRelu(l - 1) ? "ReLU(z) = max(0, z)" : "σ(z)";
    $("n-off").checked = !!off[l - 1][j];
    const b0 = trainedBiases[l - 1][j];
    biasSlider.min = b0 - BIAS_RANGE;
    biasSlider.max = b0 + BIAS_RANGE;
    biasSlider.value = biases[l - 1][j];
    if (l === 1) paintDiverging($("n-weights"), weights[0].subarray(j * 784, (j + 1) * 784));
    schedule();
  }

  /** Close the neuron panel: no neuron selected. */
  function forgetSelection() {
    selected = null;
    $("neuron").hidden = true;
    $("hint").hidden = false;
  }

  function setOff(l, j, isOff) {
    off[l - 1][j] = isOff ? 1 : 0;
    if (selected && selected.l === l && selected.j === j) $("n-off").checked = isOff;
    changed();
  }

  function setBias(l, j, value) {
    biases[l - 1][j] = value;
    if (selected && selected.l === l && selected.j === j) biasSlider.value = value;
    changed();
  }

  /** Back to the trained network: its weights and biases, every neuron on, no step to undo. */
  function reset() {
    if (training) stopTraining("Reset: training stopped; the trained network is back.");
    weights.forEach((w, l) => w.set(trainedWeights[l]));
    biases.forEach((b, l) => b.set(trainedBiases[l]));
    off.forEach((o) => o.fill(0));
    undoSteps.length = 0;
    if (selected) select(selected.l, selected.j, weightChosen && weightChosen.i);
    changed();
  }

  const differs = (now, then) => now.some((a, l) => a.some((v, p) => v !== then[l][p]));

  /** Something in the network changed: redraw, and offer Reset only when there is a change. */
  function changed() {
    const any = off.some((o) => o.some((v) => v)) ||
      differs(biases, trainedBiases) || differs(weights, trainedWeights);
    $("reset").disabled = !any;
    for (const ex of examples) ex.predicted = argmax(forward(ex.pixels).a[L]);
    captionExamples();
    if (selected && selected.l === 1) {
      paintDiverging($("n-weights"), weights[0].subarray(selected.j * 784, (selected.j + 1) * 784));
    }
    schedule();
  }

  $("n-off").addEventListener("change", (e) => setOff(selected.l, selected.j, e.target.checked));
  biasSlider.addEventListener("input", () =>
    setBias(selected.l, selected.j, Number(biasSlider.value)));
  $("reset").onclick = reset;

  /** Values in a 28x28 canvas, red (−) → white (0) → blue (+), on a symmetric scale. */
  function paintDiverging(canvas, values) {
    let scale = 0;
    for (const v of values) scale = Math.max(scale, Math.abs(v));
    const image = new ImageData(SIDE, SIDE);
    for (let p = 0; p < SIDE * SIDE; p++) {
      const t = scale > 0 ? values[p] / scale : 0;
      const pos = Math.max(t, 0), neg = Math.max(-t, 0);
      // as pictures.diverging_colors: white fades to blue (0, 0, 1) or red (1, 0, 0)
      image.data.set([255 * (1 - pos), 255 * (1 - pos - neg), 255 * (1 - neg), 255], 4 * p);
    }
    canvas.getContext("2d").putImageData(image, 0, 0);
  }

  /** Later layers: rows of bars, one a neuron of the layer below, each row on its own
   * scale (written as ±largest), with the neurons' numbers along the bottom. */
  function paintBars(canvas, rows) {
    const c = canvas.getContext("2d");
    const width = canvas.width, numbers = 14, band = (canvas.height - numbers) / rows.length;
    c.clearRect(0, 0, width, canvas.height);
    c.font = "11px system-ui, sans-serif";
    const n = rows[0][0].length, step = width / n;
    rows.forEach(([values, label], row) => {
      let scale = 0;
      for (const v of values) scale = Math.max(scale, Math.abs(v));
      const mid = row * band + band / 2 + 6, room = band / 2 - 10;
      c.fillStyle = "#8b93a3";
      c.textAlign = "left";
      c.fillText(`${label} (largest ±${scale.toPrecision(2)})`, 0, row * band + 10);
      for (let i = 0; i < n; i++) {
        const h = scale > 0 ? (values[i] / scale) * room : 0;
        c.fillStyle = rgba(values[i] >= 0 ? COLOURS.pos : COLOURS.neg, 1);
        c.fillRect(i * step + 1, Math.min(mid, mid - h), Math.max(step - 2, 1), Math.abs(h));
      }
      c.fillStyle = "#3a4252";
      c.fillRect(0, mid, width, 1);
    });
    if (step >= 12) { // room for the neurons' numbers
      c.fillStyle = "#8b93a3";
      c.textAlign = "center";
      for (let i = 0; i < n; i++) c.fillText(String(i), (i + 0.5) * step, canvas.height - 3);
    }
  }

  function updatePanel(state) {
    if (!selected) return;
    const { l, j } = selected;
    $("n-sum").textContent = fmt(state.sums[l - 1][j]);
    $("n-b").textContent = fmt(biases[l - 1][j]);
    $("n-z").textContent = fmt(state.zs[l - 1][j]);
    $("n-a").textContent = off[l - 1][j] ? "off: 0" : fmt(state.a[l][j]);
    $("n-bias-value").textContent = fmt(biases[l - 1][j], 2);
    const nIn = sizes[l - 1];
    const w = weights[l - 1].subarray(j * nIn, (j + 1) * nIn);
    const contributions = w.map((v, i) => v * state.a[l - 1][i]);
    const grads = gradientsNow();
    const nudge = Array.from(grads.nabla_w[l - 1].subarray(j * nIn, (j + 1) * nIn), (g) => -g);
    if (l === 1) {
      paintDiverging($("n-product"), contributions);
      paintDiverging($("n-grad"), nudge);
    } else {
      paintBars($("n-bars"), [[w, "weights w"], [contributions, "w·a now"],
        [nudge, "nudge −∂C/∂w"]]);
    }
    updateNeuronLearning(state, grads);
  }

  // --- one update per animation frame: drawing -> input -> network -> picture ----------

  let state = forward(input);
  const stats = { updates: 0, ms: 0, recent: [] };
  let scheduled = false;

  function schedule() {
    needsUpdate = true;
    grads = null; // the input, the label or the network changed: backprop again when asked
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(frame);
    }
  }

  function update() {
    const t0 = performance.now();
    if (needsConversion) {
      paintStrokes();
      const { width, height } = drawCanvas;
      input = toMnist(drawCtx.getImageData(0, 0, width, height).data, width, height);
      needsConversion = false;
    }
    state = forward(input);
    grads = null; // the gradients of this input, computed once when first asked for
    drawNetwork(state);
    updatePanel(state);
    updateLearning(state);
    const t1 = performance.now();
    stats.updates++;
    stats.ms += t1 - t0;
    stats.recent.push(t1);
    while (stats.recent.length && stats.recent[0] < t1 - 1000) stats.recent.shift();
  }

  function frame() {
    scheduled = false;
    if (!needsUpdate) return;
    needsUpdate = false;
    update();
    $("undo").disabled = !!preset || !strokes.length;
    $("stats").textContent =
      `${stats.updates} updates, ${(stats.ms / stats.updates).toFixed(1)} ms each ` +
      `(${stats.recent.length} in the last second)`;
  }

  // For tests and the curious: the page's own functions, from the browser's console
  // (draw_page_learn.js adds backprop, sgdStep, train and the rest).
  window.mlp = {
    get sizes() { return sizes; },
    get activation() { return activation; }, // of the hidden layers: "sigmoid" or "relu"
    get shown() { return [SIDE * SIDE, ...layout.slice(1).map((c) => c.shown)]; }, // drawn
    position: (l, j) => [layout[l].x, layout[l].ys[j]], // neuron j of layer l on the canvas
    forward: (x) => forward(x),
    toMnist: (rgba, w, h) => Array.from(toMnist(rgba, w, h)),
    setInput: (pixels, digit) =>
      setPreset({ pixels: Float64Array.from(pixels), digit, label: "Input: set." }),
    select,
    setOff,
    setBias,
    reset,
    undo,
    clear,
    stats,
    /** The connections drawn now, each { l, j, i } and its two ends on the canvas. */
    lines: () =>
      drawnLines.map(([l, i, j, x0, y0, x1, y1]) => ({ l, j, i, from: [x0, y0], to: [x1, y1] })),
    /** Everything as plain arrays, once any pending update has run. */
    state: () => {
      if (needsUpdate) frame();
      return {
        input: Array.from(input),
        activations: state.a.map((a) => Array.from(a)),
        zs: state.zs.map((z) => Array.from(z)),
        biases: biases.map((b) => Array.from(b)),
        strokes: strokes.length,
      };
    },
  };
