// Watch it learn: the book's backpropagation (BP1-BP4) and SGD, on the page's own network.
// The same equations as mlp_digits/backprop.py, one example at a time, in float64:
//   BP1: δᴸ = (aᴸ − y) ⊙ σ'(zᴸ)          BP3: ∂C/∂bˡ = δˡ
//   BP2: δˡ = ((Wˡ⁺¹)ᵀ δˡ⁺¹) ⊙ σ'(zˡ)     BP4: ∂C/∂wˡⱼₖ = aˡ⁻¹ₖ δˡⱼ
// With ReLU hidden layers (NET.activation "relu") they compute aˡ = ReLU(zˡ), and BP2 takes
// ReLU'(zˡ) in place of σ'(zˡ) (``activationPrime``); the output layer, and BP1, stay σ.
// and the cost of a mini-batch C = 1/(2m) Σ_x ‖y(x) − a(x)‖², stepped by w ← w − η ∂C/∂w.
// Indices follow backprop.py: weights[l] feeds the layer whose zs[l] and deltas[l] these are.

  const LEARN = NET.learn; // the training and test digits, or null: no "Train it here"
  const DEFAULT_ETA = NET.eta; // the run's η (a network without a run: DigitsMLP's default)
  const EPSILON = 1e-5; // the finite difference's step, as the book's gradient check
  const GRID = 21; // the landscape: GRID x GRID costs ...
  const SPAN = 3; // ... for each weight within ±SPAN of where it was when picked
  const SLICE_MS = 30; // training works this long, then lets the page answer clicks and draw

  // --- feedforward and backprop, as in backprop.py -----------------------------------------

  /** Gradients span many orders of magnitude: four significant digits, a true minus. */
  const sig = (v) => (v === 0 ? "0" : Math.abs(v) >= 1e-3 && Math.abs(v) < 1e4
    ? fmt(v, Math.max(0, 3 - Math.floor(Math.log10(Math.abs(v)))))
    : (v < 0 ? "−" : "") + Math.abs(v).toExponential(3).replace("e-", "e−"));

  /** zˡ = Wˡ aˡ⁻¹ + bˡ and aˡ = σ(zˡ) (ReLU(zˡ) in a ReLU network's hidden layers), layer by
   * layer, recording both (a switched-off neuron's activation is 0, as in the picture). */
  function feedforward(x) {
    const activations = [x], zs = [];
    for (let l = 0; l < L; l++) {
      const nIn = sizes[l], nOut = sizes[l + 1], w = weights[l], a = activations[l];
      const z = new Float64Array(nOut), next = new Float64Array(nOut);
      for (let j = 0; j < nOut; j++) {
        let sum = 0;
        for (let i = 0, row = j * nIn; i < nIn; i++) sum += w[row + i] * a[i];
        z[j] = sum + biases[l][j];
        next[j] = off[l][j] ? 0 : activate(l, z[j]);
      }
      zs.push(z);
      activations.push(next);
    }
    return { activations, zs };
  }

  /** The cost of one example, C = ½‖y − a‖², y the one-hot vector of ``label``. */
  function cost(output, label) {
    let c = 0;
    for (let j = 0; j < output.length; j++) c += (output[j] - (j === label ? 1 : 0)) ** 2;
    return c / 2;
  }

  /** The gradients of one example's cost, added into ``nabla_w`` and ``nabla_b``: a
   * mini-batch sums them and divides by m. Returns its cost, deltas, activations and zs. */
  function backpropInto(x, label, nabla_w, nabla_b) {
    const { activations, zs } = feedforward(x);
    const output = activations[L];
    const deltas = new Array(L);
    let delta = new Float64Array(sizes[L]);
    for (let j = 0; j < sizes[L]; j++) { // BP1: ∂C/∂a = a − y, times σ'(z) (the outputs are σ)
      const dCda = output[j] - (j === label ? 1 : 0);
      delta[j] = off[L - 1][j] ? 0 : dCda * activationPrime(L - 1, zs[L - 1][j]);
    }
    deltas[L - 1] = delta;
    for (let l = L - 1; l >= 0; l--) {
      const nIn = sizes[l], a = activations[l], nw = nabla_w[l], nb = nabla_b[l], w = weights[l];
      const before = l > 0 ? new Float64Array(nIn) : null; // (Wˡ)ᵀ δˡ, for BP2
      for (let j = 0; j < delta.length; j++) {
        const d = delta[j];
        nb[j] += d; // BP3
        if (d === 0) continue;
        const row = j * nIn;
        for (let i = 0; i < nIn; i++) nw[row + i] += d * a[i]; // BP4
        if (before) for (let i = 0; i < nIn; i++) before[i] += w[row + i] * d;
      }
      if (!before) break;
      for (let i = 0; i < nIn; i++) { // BP2, σ' or ReLU': a switched-off neuron passes nothing
        before[i] = off[l - 1][i] ? 0 : before[i] * activationPrime(l - 1, zs[l - 1][i]);
      }
      delta = before;
      deltas[l - 1] = delta;
    }
    return { cost: cost(output, label), deltas, activations, zs };
  }

  const zerosLike = (arrays) => arrays.map((a) => new Float64Array(a.length));

  /** The book's backprop for one example: {cost, deltas, nabla_w, nabla_b, activations, zs}. */
  function backprop(x, label) {
    const nabla_w = zerosLike(weights), nabla_b = zerosLike(biases);
    return { ...backpropInto(x, label, nabla_w, nabla_b), nabla_w, nabla_b };
  }

  let sums = null; // Σ ∂C/∂w and Σ ∂C/∂b of a mini-batch: one set for every step, until
  // another network is opened

  /** One step of SGD on a mini-batch: the mean gradient, w ← w − η ∂C/∂w, b ← b − η ∂C/∂b.
   * Returns the mini-batch's cost before the step. */
  function sgdStep(xs, labels, eta) {
    sums = sums || { nabla_w: zerosLike(weights), nabla_b: zerosLike(biases) };
    const { nabla_w, nabla_b } = sums;
    nabla_w.forEach((s) => s.fill(0));
    nabla_b.forEach((s) => s.fill(0));
    let total = 0;
    for (let k = 0; k < xs.length; k++) {
      total += backpropInto(xs[k], labels[k], nabla_w, nabla_b).cost;
    }
    const m = xs.length;
    for (let l = 0; l < L; l++) {
      const w = weights[l], b = biases[l], nw = nabla_w[l], nb = nabla_b[l];
      for (let p = 0; p < w.length; p++) w[p] -= eta * (nw[p] / m);
      for (let j = 0; j < b.length; j++) b[j] -= eta * (nb[j] / m);
    }
    return total / m;
  }

  // --- the parameters: copies for undo, a random start -----------------------------------

  const snapshot = () => ({
    weights: weights.map((w) => Float64Array.from(w)),
    biases: biases.map((b) => Float64Array.from(b)),
  });

  function restore({ weights: ws, biases: bs }) {
    ws.forEach((w, l) => weights[l].set(w));
    bs.forEach((b, l) => biases[l].set(b));
    changed();
  }

  /** A seeded generator of uniform numbers in [0, 1): mulberry32, small and fast. */
  function uniform(seed) {
    let t = seed >>> 0;
    return () => {
      t = (t + 0x6d2b79f5) >>> 0;
      let r = Math.imul(t ^ (t >>> 15), 1 | t);
      r ^= r + Math.imul(r ^ (r >>> 7), 61 | r);
      return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
    };
  }

  /** N(0, 1) numbers by the Box-Muller transform. */
  function gaussian(random) {
    return () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  }

  /** Every weight and bias from N(0, 1), as the book's network.py starts. */
  function randomStart(seed) {
    const normal = gaussian(uniform(seed ^ 0x5eed));
    for (const p of [...weights, ...biases]) for (let k = 0; k < p.length; k++) p[k] = normal();
    changed();
  }

  // --- the digits of "Train it here": PNG sprites, one digit a row of 784 pixels --------

  /** The digits as one Float64Array (n x 784, in [0, 1]) and their labels. Decoded from the
   * page's own bytes: no URL, so nothing is requested. */
  async function decodeDigits({ count, sprites, labels }) {
    const pixels = new Float64Array(count * 784);
    let row = 0;
    for (const sprite of sprites) {
      const blob = new Blob([bytes(sprite)], { type: "image/png" });
      const image = await createImageBitmap(blob, {
        colorSpaceConversion: "none", premultiplyAlpha: "none",
      });
      const canvas = document.createElement("canvas");
      canvas.width = image.width;
      canvas.height = image.height;
      const c = canvas.getContext("2d", { willReadFrequently: true });
      c.drawImage(image, 0, 0);
      const rgba = c.getImageData(0, 0, image.width, image.height).data;
      for (let p = 0; p < image.width * image.height; p++) {
        pixels[row * 784 + p] = rgba[4 * p] / 255; // grey: R = G = B
      }
      row += image.height;
    }
    const x = (k) => pixels.subarray(k * 784, (k + 1) * 784); // digit k, without a copy
    return { count, pixels, labels: bytes(labels), x };
  }

  let decoded = null; // { train, test } once the sprites are read
  const digitsReady = LEARN
    ? Promise.all([decodeDigits(LEARN.train), decodeDigits(LEARN.test)])
      .then(([train, test]) => (decoded = { train, test }))
    : Promise.resolve(null);

  /** How many of the page's test digits the network reads right. */
  function evaluateOn(test) {
    let correct = 0;
    for (let k = 0; k < test.count; k++) {
      if (argmax(feedforward(test.x(k)).activations[L]) === test.labels[k]) correct++;
    }
    return { correct, total: test.count };
  }

  // --- the cost of this digit: y, C and a − y ---------------------------------------------

  let chosenLabel = null; // the digit the learner clicked as y, until the input changes
  let grads = null; // backprop of the current input and label, once asked for

  /** y's digit: the learner's choice, else a test digit's true label, else the answer. */
  function target() {
    if (chosenLabel !== null) return chosenLabel;
    if (preset && preset.digit !== undefined) return preset.digit;
    return argmax(state.a[L]);
  }

  function gradientsNow() {
    if (!grads) grads = { ...backprop(input, target()), label: target() };
    return grads;
  }

  const targetBox = $("targets");
  for (let d = 0; d < sizes[L]; d++) {
    const button = document.createElement("button");
    button.textContent = String(d);
    button.onclick = () => {
      chosenLabel = d;
      schedule();
    };
    targetBox.append(button);
  }

  function updateCost(g) {
    const output = g.activations[L];
    [...targetBox.children].forEach((b, d) => b.classList.toggle("on", d === g.label));
    $("target-why").textContent = chosenLabel !== null ? "your choice"
      : preset && preset.digit !== undefined ? "the test digit's true label"
        : "the network's answer (click another digit)";
    $("cost").textContent = fmt(g.cost);
    const rows = [
      "<tr><td></td><td class=num>a</td><td class=num>y</td><td class=num>a − y</td></tr>",
    ];
    for (let j = 0; j < output.length; j++) {
      const y = j === g.label ? 1 : 0;
      rows.push(`<tr><td>${j}</td><td class=num>${fmt(output[j])}</td><td class=num>${y}</td>` +
        `<td class=num>${fmt(output[j] - y)}</td></tr>`);
    }
    $("cost-table").innerHTML = rows.join("");
    const answer = argmax(state.a[L]);
    $("reads").innerHTML = `It reads: <b>${answer}</b> (a = ${state.a[L][answer].toFixed(2)})`;
  }

  // --- the backprop view on the network picture -------------------------------------------

  let showing = "think"; // or "backprop"
  for (const radio of document.querySelectorAll("input[name=view]")) {
    radio.addEventListener("change", () => {
      showing = radio.value;
      $("key-think").hidden = showing !== "think";
      $("key-backprop").hidden = showing !== "backprop";
      schedule();
    });
  }

  /** The largest nudges −∂C/∂w = −δⱼ aᵢ into each drawn neuron of layer l: [i, j, nudge]. */
  function nudges(l) {
    const g = gradientsNow(), nIn = sizes[l - 1], nw = g.nabla_w[l - 1];
    const fromShown = l === 1 ? nIn : layout[l - 1].shown;
    const lines = [];
    for (let j = 0; j < layout[l].shown; j++) {
      const k = selected && selected.l === l && selected.j === j ? TOP_K_SELECTED : TOP_K;
      const row = [];
      for (let i = 0; i < fromShown; i++) {
        if (nw[j * nIn + i] !== 0) row.push([i, j, -nw[j * nIn + i]]);
      }
      row.sort((p, q) => Math.abs(q[2]) - Math.abs(p[2]));
      lines.push(...row.slice(0, k).reverse());
    }
    return lines;
  }

  /** A ring on neuron j of layer l: blue where the cost wants z up (δ < 0), red where down;
   * its width grows with |δ|, relative to the largest |δ| of the layer. */
  function drawDelta(l, j, x, y, r) {
    const delta = gradientsNow().deltas[l - 1];
    let biggest = 0;
    for (const d of delta) biggest = Math.max(biggest, Math.abs(d));
    if (biggest === 0 || delta[j] === 0) return;
    const strength = Math.abs(delta[j]) / biggest;
    ctx.beginPath();
    ctx.arc(x, y, r + 3 + 4 * strength, 0, 2 * Math.PI);
    ctx.lineWidth = 1 + 7 * strength;
    ctx.strokeStyle = rgba(delta[j] < 0 ? COLOURS.pos : COLOURS.neg, 0.35 + 0.65 * strength);
    ctx.stroke();
  }

  function drawBackpropKey() {
    const g = gradientsNow();
    ctx.textAlign = "left";
    ctx.fillStyle = "#e6e9ef";
    ctx.font = "13px system-ui, sans-serif";
    ctx.fillText(`backprop of C = ${fmt(g.cost)} for y = ${g.label}`, 10, NET_H - 14);
  }

  // --- the neuron panel: δ, ∂C/∂b; the chain rule for one of its weights -------------------

  let weightChosen = null; // { l, j, i }: the weight the chain rule and the landscape follow

  /** The strongest inputs of neuron j of layer l now, by |w·a|, strongest first. */
  function strongestInputs(l, j) {
    const nIn = sizes[l - 1], w = weights[l - 1], a = state.a[l - 1];
    return Array.from({ length: nIn }, (_, i) => i)
      .sort((p, q) => Math.abs(w[j * nIn + q] * a[q]) - Math.abs(w[j * nIn + p] * a[p]));
  }

  function chooseWeight(l, j, i) {
    if (i === undefined || i === null) i = strongestInputs(l, j)[0];
    weightChosen = { l, j, i };
    const pick = $("chain-input");
    pick.innerHTML = "";
    const order = strongestInputs(l, j);
    for (const k of l === 1 ? order.slice(0, 60) : order) {
      const option = document.createElement("option");
      option.value = k;
      option.textContent = l === 1 ? `pixel ${k} (row ${Math.floor(k / SIDE)}, column ${k % SIDE})`
        : `neuron ${k} of ${l === 2 ? "hidden layer 1" : `hidden layer ${l - 1}`}`;
      pick.append(option);
    }
    if (![...pick.options].some((o) => Number(o.value) === i)) {
      const option = document.createElement("option");
      option.value = i;
      option.textContent = l === 1 ? `pixel ${i}` : `neuron ${i}`;
      pick.prepend(option);
    }
    pick.value = i;
    $("chain-neuron").textContent = l === L ? `output ${j}` : `neuron ${j} of hidden layer ${l}`;
    $("chain-hint").hidden = true;
    $("chain").hidden = false;
    landscape = null; // a new pair of weights: a new grid around them
  }
  $("chain-input").addEventListener("change", (e) => {
    const { l, j } = weightChosen;
    chooseWeight(l, j, Number(e.target.value));
    schedule();
  });

  /** ∂C/∂w for weight i → j of layer l, by the chain rule, and the book's check of it:
   * ∂C/∂w = ∂z/∂w · ∂a/∂z · ∂C/∂a = a_in · f'(z) · ∂C/∂a, and (C(w + ε) − C(w − ε)) / 2ε;
   * f' is σ', or ReLU' in a ReLU network's hidden layers. */
  function chainRule(l, j, i) {
    const g = gradientsNow(), label = g.label;
    const nIn = sizes[l - 1], p = j * nIn + i;
    const a_in = g.activations[l - 1][i];
    const z = g.zs[l - 1][j];
    const activation_prime = off[l - 1][j] ? 0 : activationPrime(l - 1, z);
    let dC_da = 0; // at the outputs a − y; below, Σ_k w_kj δ_k: what the next layer passes back
    if (l === L) dC_da = g.activations[L][j] - (j === label ? 1 : 0);
    else {
      const next = weights[l], delta = g.deltas[l], n = sizes[l];
      for (let k = 0; k < delta.length; k++) dC_da += next[k * n + j] * delta[k];
    }
    const w = weights[l - 1], saved = w[p];
    w[p] = saved + EPSILON;
    const plus = cost(feedforward(input).activations[L], label);
    w[p] = saved - EPSILON;
    const minus = cost(feedforward(input).activations[L], label);
    w[p] = saved;
    return {
      a_in, z, activation_prime, dC_da,
      product: a_in * activation_prime * dC_da,
      nabla_w: g.nabla_w[l - 1][p],
      epsilon: EPSILON,
      finite_difference: (plus - minus) / (2 * EPSILON),
    };
  }

  function updateNeuronLearning(_, g) {
    const { l, j } = selected;
    $("n-delta").textContent = sig(g.deltas[l - 1][j]);
    $("n-dcdb").textContent = sig(g.nabla_b[l - 1][j]);
  }

  function updateChain() {
    if (!weightChosen) return;
    const { l, j, i } = weightChosen;
    const c = chainRule(l, j, i);
    const from = l === 1 ? `pixel ${i}` : `neuron ${i}`;
    const f = activationName(l - 1); // σ, or ReLU in a ReLU network's hidden layers
    const slope = f === "ReLU" ? " (1 where z > 0, else 0)" : "";
    const rows = [
      [`a_in (${from})`, c.a_in, "∂z/∂w: how much w moves z"],
      [`${f}'(z)`, c.activation_prime, `∂a/∂z at z = ${fmt(c.z, 3)}${slope}`],
      ["∂C/∂a", c.dC_da, l === L ? "a − y (BP1)" : "Σₖ wₖⱼ δₖ: from the layer after (BP2)"],
      ["∂C/∂w = product", c.product, `a_in · ${f}'(z) · ∂C/∂a`],
      ["∂C/∂w by backprop", c.nabla_w, "δ · a_in (BP4)"],
    ];
    $("chain-table").innerHTML = rows.map(([name, v, why]) =>
      `<tr><td>${name}</td><td class=num>${sig(v)}</td><td class=note>${why}</td></tr>`).join("");
    const relative = Math.abs(c.finite_difference - c.nabla_w) /
      Math.max(Math.abs(c.nabla_w), Math.abs(c.finite_difference), 1e-300);
    $("chain-check").textContent = `The book's check, two forward passes of this page: ` +
      `(C(w + ε) − C(w − ε)) / 2ε = ${sig(c.finite_difference)} for ε = ${EPSILON}` +
      (c.nabla_w === 0 ? "." : `, relative difference ${relative.toExponential(1)}.`);
  }

  // --- downhill: the cost over two weights of one neuron ----------------------------------

  let landscape = null; // { pair, origin, costs }: the grid, kept while its weights are stepped

  /** The second weight of the landscape: the strongest other input of the same neuron. */
  function landscapePair() {
    const { l, j, i } = weightChosen;
    const other = strongestInputs(l, j).find((k) => k !== i);
    const nIn = sizes[l - 1];
    return [j * nIn + i, j * nIn + other].map((p) => ({ l, p, i: p - j * nIn }));
  }

  /** This example's cost with the two weights at (u, v), every other parameter as it is. */
  function costAt(pair, u, v) {
    const w = weights[pair[0].l - 1], saved = [w[pair[0].p], w[pair[1].p]];
    w[pair[0].p] = u;
    w[pair[1].p] = v;
    const c = cost(feedforward(input).activations[L], target());
    w[pair[0].p] = saved[0];
    w[pair[1].p] = saved[1];
    return c;
  }

  /** The grid of costs around the pair's origin, the current point, and −∇C there. */
  function computeLandscape() {
    const pair = landscapePair(), w = weights[pair[0].l - 1];
    const now = [w[pair[0].p], w[pair[1].p]];
    const key = `${pair[0].l}:${pair[0].p}:${pair[1].p}:${target()}`;
    if (!landscape || landscape.key !== key || now.some((v, k) =>
      Math.abs(v - landscape.origin[k]) > SPAN)) landscape = { key, origin: now };
    const { origin } = landscape;
    const costs = new Float64Array(GRID * GRID); // row: the second weight, column: the first
    const half = (GRID - 1) / 2;
    for (let r = 0; r < GRID; r++) {
      for (let c = 0; c < GRID; c++) {
        costs[r * GRID + c] = costAt(pair, origin[0] + ((c - half) / half) * SPAN,
          origin[1] + ((r - half) / half) * SPAN);
      }
    }
    const g = gradientsNow().nabla_w[pair[0].l - 1];
    const gradient = [g[pair[0].p], g[pair[1].p]];
    return {
      weights: pair.map(({ l, p, i }) => ({ l, j: weightChosen.j, i, index: p })),
      origin, point: now, span: SPAN, n: GRID, costs: Array.from(costs),
      cost: gradientsNow().cost, gradient, arrow: [-gradient[0], -gradient[1]],
    };
  }

  /** Dark blue (low cost) to yellow (high), a viridis-like ramp. */
  function heat(t) {
    const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1), k = Math.min(Math.floor(x), 3);
    return stops[k].map((v, c) => Math.round(v + (stops[k + 1][c] - v) * (x - k)));
  }

  function drawLandscape() {
    if (!weightChosen) return;
    const view = computeLandscape();
    const canvas = $("landscape"), c = canvas.getContext("2d"), size = canvas.width;
    let low = Infinity, high = -Infinity;
    for (const v of view.costs) [low, high] = [Math.min(low, v), Math.max(high, v)];
    const cell = size / GRID;
    for (let r = 0; r < GRID; r++) {
      for (let col = 0; col < GRID; col++) {
        const [R, G, B] = heat((view.costs[r * GRID + col] - low) / (high - low || 1));
        c.fillStyle = `rgb(${R},${G},${B})`;
        c.fillRect(col * cell, size - (r + 1) * cell, cell + 0.5, cell + 0.5); // w₂ upwards
      }
    }
    const toX = (u) => ((u - view.origin[0] + SPAN) / (2 * SPAN)) * size;
    const toY = (v) => size - ((v - view.origin[1] + SPAN) / (2 * SPAN)) * size;
    const [px, py] = [toX(view.point[0]), toY(view.point[1])];
    // The arrow is the step −η∇C to scale when that is visible, else −∇C's direction.
    const eta = Number($("eta").value) || DEFAULT_ETA;
    const perUnit = size / (2 * SPAN); // canvas pixels per unit of weight
    let [dx, dy] = [eta * view.arrow[0] * perUnit, -eta * view.arrow[1] * perUnit];
    const length = Math.hypot(dx, dy);
    const toScale = length >= 8 && length <= size / 2;
    if (!toScale && length > 0) [dx, dy] = [(dx / length) * 40, (dy / length) * 40];
    c.strokeStyle = c.fillStyle = "#fff";
    c.lineWidth = 2;
    if (length > 0) { // ∇C = 0 (a ReLU that is off): no arrow, not one pointing anywhere
      c.beginPath();
      c.moveTo(px, py);
      c.lineTo(px + dx, py + dy);
      c.stroke();
      const angle = Math.atan2(dy, dx);
      c.beginPath();
      c.moveTo(px + dx, py + dy);
      c.lineTo(px + dx - 8 * Math.cos(angle - 0.4), py + dy - 8 * Math.sin(angle - 0.4));
      c.lineTo(px + dx - 8 * Math.cos(angle + 0.4), py + dy - 8 * Math.sin(angle + 0.4));
      c.fill();
    }
    c.beginPath();
    c.arc(px, py, 5, 0, 2 * Math.PI);
    c.fillStyle = "#ff5252";
    c.fill();
    c.stroke();
    const [first, second] = view.weights;
    const name = ({ l, i }) => (l === 1 ? `pixel ${i}` : `neuron ${i}`);
    $("landscape-what").textContent = `C of this digit over two weights into ${
      first.l === L ? `output ${first.j}` : `neuron ${first.j} of hidden layer ${first.l}`}: ` +
      `from ${name(first)} (across) and from ${name(second)} (up), each ±${SPAN} around ` +
      "where it was when picked; every other weight as it is now.";
    // A ReLU with z ≤ 0 passes no gradient back: its weights have ∇C = 0, and no arrow.
    const flat = length === 0 && isRelu(first.l - 1) && state.zs[first.l - 1][first.j] <= 0;
    $("landscape-note").textContent = `C from ${fmt(low)} (dark) to ${fmt(high)} (yellow); ` +
      `here ${fmt(view.cost)} (red dot). ` + (flat ? "No arrow: this ReLU neuron is off for " +
        "this digit (z ≤ 0, so ReLU'(z) = 0), and its weights get no gradient from it"
        : `Arrow: ${toScale ? `the step −η∇C, to scale`
          : "the direction of −∇C (the step itself is too " + (length < 8 ? "short" : "long") +
            " to draw to scale)"}`) +
      `; ∇C = (${sig(view.gradient[0])}, ${sig(view.gradient[1])}).`;
  }

  // --- take a step, undo it ---------------------------------------------------------------

  const undoSteps = []; // the parameters before each step, newest last

  function step(xs, labels, eta) {
    if (training) return null;
    undoSteps.push(snapshot());
    const before = sgdStep(xs, labels, eta);
    changed();
    return before;
  }

  function stepHere() {
    const eta = Number($("eta").value);
    if (!(eta > 0)) return void ($("step-result").textContent = "Give η a number above 0.");
    const label = target();
    chosenLabel = label; // y stays what it was: the step is judged on the same example
    const before = step([Float64Array.from(input)], [label], eta);
    if (before === null) return;
    const after = cost(feedforward(input).activations[L], label);
    $("step-result").textContent = `C of this digit (y = ${label}): ${fmt(before)} before the ` +
      `step, ${fmt(after)} after.`;
  }

  function stepOnExamples() {
    const eta = Number($("eta").value);
    if (!(eta > 0) || !examples.length) return;
    const xs = examples.map((ex) => ex.pixels), labels = examples.map((ex) => ex.label);
    const before = step(xs, labels, eta);
    if (before === null) return;
    let after = 0;
    xs.forEach((x, k) => { after += cost(feedforward(x).activations[L], labels[k]); });
    $("step-result").textContent = `Mean C of the ${xs.length} test digits above: ` +
      `${fmt(before)} before the step, ${fmt(after / xs.length)} after.`;
  }

  function undoStep() {
    if (!undoSteps.length || training) return;
    restore(undoSteps.pop());
    $("step-result").textContent = "Step undone.";
  }

  $("eta").value = DEFAULT_ETA;
  $("step").onclick = stepHere;
  $("step-batch").onclick = stepOnExamples;
  $("step-batch").hidden = !examples.length;
  $("undo-step").onclick = undoStep;

  // --- train it here ----------------------------------------------------------------------

  let training = null; // { paused, stopped, resume }: the run in progress
  const curve = []; // { epoch, accuracy, cost } of the run shown

  function stopTraining(message, bad = false) {
    if (training) {
      training.stopped = true;
      if (training.resume) training.resume(); // a paused run wakes up to stop
    }
    say(message, bad);
  }

  function say(message, bad = false) {
    $("train-status").textContent = message;
    $("train-status").classList.toggle("bad", bad);
  }

  /** Let the page draw and answer clicks; wait while paused. True when the run must stop. */
  async function breathe(run) {
    await new Promise((resolve) => setTimeout(resolve, 0));
    while (run.paused && !run.stopped) await new Promise((resolve) => { run.resume = resolve; });
    return run.stopped;
  }

  /** Epochs of mini-batch SGD on the page's training digits, as sgd.SGD: each epoch a fresh
   * order of the digits, a step on each mini-batch, then the test digits evaluated; in slices
   * between frames. Resolves with what the run measured: its curve, digits per second, and
   * why it stopped. */
  async function train({ epochs = 10, batchSize, eta, seed = 0, fromRandom = false } = {}) {
    const data = await digitsReady;
    if (!data) throw new Error("this page has no training digits");
    if (training) throw new Error("already training");
    batchSize = batchSize || LEARN.batchSize;
    eta = eta ?? DEFAULT_ETA;
    const run = startTraining(fromRandom, seed);
    const random = uniform(seed);
    const { train: digits, test } = data;
    const start = evaluateOn(test);
    curve.push({ epoch: 0, accuracy: start.correct / start.total, cost: NaN });
    drawCurve();
    say(`Training: ${digits.count} digits, mini-batches of ${batchSize}, η = ${eta}.`);
    const order = Uint32Array.from({ length: digits.count }, (_, k) => k);
    let outcome = "done";
    run.sliceStart = performance.now();
    for (let epoch = 1; epoch <= epochs && outcome === "done"; epoch++) {
      permutation(order, random);
      const { cost, ended } = await trainEpoch(run, digits, order, batchSize, eta);
      if (ended) {
        outcome = ended === "stopped" ? ended : `diverged: in epoch ${epoch} ${ended}, so the ` +
          "weights are no longer numbers. Try a smaller η, then Reset (or Start from random).";
        break;
      }
      const point = endEpoch(epoch, epochs, cost, test);
      outcome = stuck(point, test, eta) || ((await breathe(run)) ? "stopped" : "done");
      run.sliceStart = performance.now();
    }
    return finishTraining(run, outcome);
  }

  /** The buttons that would change the network mid-run go grey; ``fromRandom``: N(0, 1)
   * weights first. Returns the run: { paused, stopped, resume, seen, busy, sliceStart }. */
  function startTraining(fromRandom, seed) {
    training = { paused: false, stopped: false, resume: null, seen: 0, busy: 0 };
    $("train").disabled = $("step").disabled = $("step-batch").disabled = true;
    $("undo-step").disabled = true;
    $("pause").disabled = false;
    if (fromRandom) randomStart(seed);
    trainingStart = Float64Array.from(weights[0]);
    curve.length = 0;
    return training;
  }

  /** A fresh order of the digits for an epoch (Fisher-Yates), as sgd.EpochPermutation's. */
  function permutation(order, random) {
    for (let k = order.length - 1; k > 0; k--) {
      const r = Math.floor(random() * (k + 1));
      [order[k], order[r]] = [order[r], order[k]];
    }
  }

  /** One epoch: an SGD step on each mini-batch of ``order`` (sgd.mini_batches), letting the
   * page draw and answer between slices. Resolves with the epoch's mean cost, or with why it
   * ended early ({ ended: "stopped" }, or what the cost became). */
  async function trainEpoch(run, digits, order, batchSize, eta) {
    let total = 0;
    for (let s = 0; s < order.length; s += batchSize) {
      const batch = order.subarray(s, s + batchSize);
      const xs = Array.from(batch, (k) => digits.x(k));
      const c = sgdStep(xs, Array.from(batch, (k) => digits.labels[k]), eta);
      total += c * batch.length;
      run.seen += batch.length;
      if (!Number.isFinite(c)) return { ended: `the cost became ${c}` };
      if (performance.now() - run.sliceStart > SLICE_MS) {
        run.busy += performance.now() - run.sliceStart;
        drawTiles();
        if (await breathe(run)) return { ended: "stopped" };
        run.sliceStart = performance.now();
      }
    }
    run.busy += performance.now() - run.sliceStart;
    return { cost: total / digits.count };
  }

  /** After an epoch (sgd.evaluate): the test digits read right, on the curve and in words. */
  function endEpoch(epoch, epochs, cost, test) {
    const { correct } = evaluateOn(test);
    const point = { epoch, accuracy: correct / test.count, cost };
    curve.push(point);
    drawCurve();
    drawTiles();
    changed();
    say(`Epoch ${epoch} of ${epochs}: ${correct} of ${test.count} test digits right ` +
      `(${(100 * point.accuracy).toFixed(1)} %), mean cost ${fmt(point.cost)}.`);
    return point;
  }

  /** Why the run must stop after this epoch, or null. Stuck: the cost no longer falls, and
   * the network reads less than half as many digits right as it did at its best; more
   * epochs would not bring it back. */
  function stuck(point, test, eta) {
    const last = curve[curve.length - 2];
    const best = Math.max(...curve.map((p) => p.accuracy));
    if (point.epoch <= 1 || point.cost < 0.99 * last.cost || point.accuracy >= best / 2) {
      return null;
    }
    return `stuck: the mean cost stopped falling (${fmt(last.cost)} → ${fmt(point.cost)}) ` +
      `with ${(100 * point.accuracy).toFixed(1)} % right (it had ` +
      `${(100 * best).toFixed(1)} %); ${saturated(test)} With η = ${eta} ` +
      "the steps overshoot. Try a smaller η, then Reset (or Start from random).";
  }

  /** The buttons back, and the run's last word; resolves train() with what it measured. */
  function finishTraining(run, outcome) {
    training = null;
    $("train").disabled = $("step").disabled = $("step-batch").disabled = false;
    $("undo-step").disabled = !undoSteps.length;
    $("pause").disabled = true;
    $("pause").textContent = "Pause";
    const speed = run.busy > 0 ? run.seen / (run.busy / 1000) : 0;
    const end = curve[curve.length - 1];
    if (outcome === "done") {
      say(`Done: ${end.epoch} epochs at ${Math.round(speed)} digits a second; ` +
        `${(100 * end.accuracy).toFixed(1)} % of the test digits right, mean cost ` +
        `${fmt(end.cost)}.`);
    } else if (outcome !== "stopped") say(`Stopped, ${outcome}`, true);
    changed();
    return { curve: curve.slice(), digitsPerSecond: speed, outcome };
  }

  /** A measured sentence on how many neurons are flat (f'(z) < 0.001: saturated σ, or a
   * ReLU at z ≤ 0) on the test digits. */
  function saturated(test) {
    let flat = 0, all = 0;
    for (let k = 0; k < Math.min(test.count, 100); k++) {
      feedforward(test.x(k)).zs.forEach((z, l) => {
        for (const v of z) { all++; if (activationPrime(l, v) < 1e-3) flat++; }
      });
    }
    return `on the first test digits ${(100 * flat / all).toFixed(0)} % of the neurons are ` +
      (RELU ? "flat (σ'(z) < 0.001 at the outputs, ReLU'(z) = 0 where z ≤ 0 in the hidden " +
        "layers)" : "saturated (σ'(z) < 0.001)") + ", so their gradients have all but vanished.";
  }

  function drawCurve() {
    const canvas = $("curve"), c = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, left = 44, top = 24, bottom = 20;
    const Y = (fraction) => top + (h - top - bottom) * (1 - fraction);
    c.clearRect(0, 0, w, h);
    c.font = "11px system-ui, sans-serif";
    c.fillStyle = "#8b93a3";
    c.strokeStyle = "#2a303c";
    c.textAlign = "right";
    for (const p of [0, 20, 40, 60, 80, 100]) {
      const y = Y(p / 100);
      c.fillText(`${p} %`, left - 4, y + 3);
      c.fillRect(left, y, w - left - 6, 0.5);
    }
    const last = Math.max(curve.length ? curve[curve.length - 1].epoch : 1, 1);
    const X = (e) => left + ((w - left - 10) * e) / last;
    c.textAlign = "center";
    for (const p of curve) c.fillText(String(p.epoch), X(p.epoch), h - 4);
    c.strokeStyle = "#ffd54a";
    c.lineWidth = 2;
    c.beginPath();
    curve.forEach((p, k) => {
      const y = Y(p.accuracy);
      if (k) c.lineTo(X(p.epoch), y);
      else c.moveTo(X(p.epoch), y);
    });
    c.stroke();
    c.textAlign = "left";
    c.fillStyle = "#ffd54a";
    c.fillText("accuracy on the page's test digits, by epoch", left, 12);
  }

  let trainingStart = Float64Array.from(weights[0]); // the first layer when Train was pressed

  /** The first 16 first-layer neurons' weights as 28x28 tiles, 4 by 4: as they are now, and
   * how much training has changed them (from N(0, 1) noise the change shows the strokes). */
  function drawTiles() {
    paintTiles($("tiles"), weights[0]);
    paintTiles($("tiles-change"), weights[0].map((v, p) => v - trainingStart[p]));
  }

  function paintTiles(canvas, values) {
    const c = canvas.getContext("2d");
    const image = new ImageData(4 * SIDE, 4 * SIDE);
    const n = Math.min(16, sizes[1]);
    for (let j = 0; j < n; j++) {
      const w = values.subarray(j * 784, (j + 1) * 784);
      let scale = 0;
      for (const v of w) scale = Math.max(scale, Math.abs(v));
      const ox = (j % 4) * SIDE, oy = Math.floor(j / 4) * SIDE;
      for (let p = 0; p < 784; p++) {
        const t = scale > 0 ? w[p] / scale : 0, pos = Math.max(t, 0), neg = Math.max(-t, 0);
        const q = 4 * ((oy + Math.floor(p / SIDE)) * 4 * SIDE + ox + (p % SIDE));
        image.data.set([255 * (1 - pos), 255 * (1 - pos - neg), 255 * (1 - neg), 255], q);
      }
    }
    c.putImageData(image, 0, 0);
  }

  function trainFromPage() {
    const number = (id) => Number($(id).value);
    const options = {
      epochs: number("train-epochs"), eta: number("train-eta"), batchSize: number("train-batch"),
      fromRandom: $("train-random").checked, seed: Math.floor(Math.random() * 2 ** 31),
    };
    if (!(options.epochs >= 1 && options.eta > 0 && options.batchSize >= 1)) {
      say("Give whole numbers of epochs and mini-batch of at least 1, and η above 0.", true);
      return;
    }
    train(options).catch((e) => say(String(e.message), true));
  }

  function pause() {
    if (!training) return;
    training.paused = !training.paused;
    $("pause").textContent = training.paused ? "Resume" : "Pause";
    if (!training.paused && training.resume) training.resume();
    if (training.paused) say(`Paused. ${$("train-status").textContent}`);
  }

  if (LEARN) {
    $("train-eta").value = DEFAULT_ETA;
    $("train-batch").value = LEARN.batchSize;
    $("train-what").textContent = `${LEARN.train.count} of the run's training digits are in ` +
      `this page; the accuracy is measured on ${LEARN.test.count} test digits.`;
    $("train").onclick = trainFromPage;
    $("pause").onclick = pause;
    drawCurve();
    drawTiles();
  } else {
    $("train-missing").hidden = false;
    $("train-controls").hidden = true;
  }

  /** Another network is opened: nothing learnt on the last one applies to it (its steps to
   * undo, its curve, the weight the chain rule followed). */
  function learnAfresh() {
    sums = null;
    undoSteps.length = 0;
    curve.length = 0;
    trainingStart = Float64Array.from(weights[0]);
    weightChosen = landscape = chosenLabel = null;
    $("chain").hidden = true;
    $("chain-hint").hidden = false;
    $("landscape-what").textContent = "Click a neuron or a connection.";
    $("landscape-note").textContent = $("step-result").textContent = "";
    const canvas = $("landscape");
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    if (LEARN) {
      drawCurve();
      drawTiles();
    }
  }

  // --- every update: the learning panels follow the input, the label and the network ------

  function updateLearning() {
    const g = gradientsNow();
    updateCost(g);
    updateChain();
    drawLandscape();
    $("undo-step").disabled = !undoSteps.length || !!training;
  }

  // The page opens on a real test digit, not on an answer for an empty canvas.
  if (examples.length) showExample(examples[0]);
  else setPreset({ pixels: new Float64Array(SIDE * SIDE), label: "Input: blank; draw a digit." });

  /** An API call sees the page as it is now: any pending update runs first. */
  const fresh = (f) => (...args) => {
    if (needsUpdate) frame();
    grads = null;
    return f(...args);
  };

  Object.assign(window.mlp, {
    /** {cost, deltas, nabla_w, nabla_b} of one example, as plain arrays. */
    backprop: (x, label) => {
      const g = backprop(Float64Array.from(x), label);
      const plain = (arrays) => arrays.map((a) => Array.from(a));
      return {
        cost: g.cost, deltas: plain(g.deltas), nabla_w: plain(g.nabla_w), nabla_b: plain(g.nabla_b),
      };
    },
    sgdStep: (xs, labels, eta) => {
      const before = sgdStep(xs.map((x) => Float64Array.from(x)), labels, eta);
      changed();
      return before;
    },
    parameters: () => ({
      weights: weights.map((w) => Array.from(w)), biases: biases.map((b) => Array.from(b)),
    }),
    setParameters: ({ weights: ws, biases: bs }) => restore({ weights: ws, biases: bs }),
    evaluate: () => {
      if (!decoded) throw new Error("no test digits decoded yet: await mlp.ready() first");
      return evaluateOn(decoded.test);
    },
    train,
    target: fresh(target),
    setTarget: (d) => { chosenLabel = d; schedule(); },
    chainRule: fresh(chainRule),
    landscape: fresh(() => (weightChosen ? computeLandscape() : null)),
    step: stepHere,
    undoStep,
    curve: () => curve.slice(),
    ready: () => digitsReady.then(() => true),
  });
