// Save this network, Open a network: the book's network2.py format, as
// mlp_digits/book_format.py writes and reads it:
//   {"sizes": [784, 30, 10], "weights": [W¹, W²], "biases": [b¹, b²], "cost": "QuadraticCost"}
// each Wˡ n_out rows of n_in numbers (row j feeds neuron j), each bˡ a column (n_out rows of
// one number), every neuron σ. A file is checked as book_format.read checks one; what is wrong
// with it is one line on the page, and the page keeps its network.

  const COST = "QuadraticCost"; // network2.py's name for C = ½‖y − a‖²
  const KEYS = ["sizes", "weights", "biases", "cost"];
  const WHAT = "give a network saved by network2.py's save(), the page or scripts/export.py";
  const N_INPUTS = SIDE * SIDE, N_OUTPUTS = 10; // the picture's pixels, and the ten digits

  /** A JSON value's kind, for the messages: object, array, string, number, boolean, null. */
  const jsonKind = (v) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

  /** A value as JSON, cut to ``limit`` characters. */
  function short(value, limit = 60) {
    const text = JSON.stringify(value) ?? String(value);
    return text.length <= limit ? text : `${text.slice(0, limit - 3)}...`;
  }

  /** What is wrong with ``sizes`` as a network for MNIST, as config.mnist_problem says it. */
  function mnistProblem(sizes) {
    if (sizes.length < 2) return `a network needs at least two layers, e.g. ${N_INPUTS} 10`;
    if (sizes[0] === N_INPUTS && sizes[sizes.length - 1] === N_OUTPUTS) return null;
    return `the network takes ${sizes[0]} inputs and gives ${sizes[sizes.length - 1]} ` +
      `outputs; MNIST needs ${N_INPUTS} inputs and ${N_OUTPUTS} outputs, so the sizes must ` +
      `start with ${N_INPUTS} and end with ${N_OUTPUTS}`;
  }

  /** The network in the network2 JSON ``text`` of the file ``name``, checked as
   * book_format.read checks a file: the four keys, sizes 784 → ... → 10, every array of the
   * shape the sizes give, finite numbers, the quadratic cost. Else an Error of one line. */
  function readNetwork2(text, name) {
    let data;
    try {
      data = JSON.parse(text);
    } catch (e) {
      const why = /\b(NaN|Infinity)\b/.test(text)
        ? "it holds NaN or Infinity, which JSON has no numbers for: the network had diverged"
        : e.message;
      throw new Error(`${name} is not JSON (${why}); ${WHAT}`);
    }
    if (jsonKind(data) !== "object") {
      throw new Error(`${name} holds a JSON ${jsonKind(data)}, not network2's object of ` +
        `${KEYS.join(", ")}; ${WHAT}`);
    }
    const missing = KEYS.filter((key) => !Object.hasOwn(data, key));
    if (missing.length) {
      throw new Error(`${name} lacks ${missing.join(", ")}: network2's save() writes ` +
        `${KEYS.join(", ")}; ${WHAT}`);
    }
    if (data.cost !== COST) {
      throw new Error(`${name}: the cost is ${short(data.cost)}; this project trains and tests ` +
        `with the quadratic cost, so it reads "${COST}" networks only`);
    }
    const sizes = data.sizes;
    const counts = Array.isArray(sizes) && sizes.length > 0;
    if (!(counts && sizes.every((n) => Number.isInteger(n) && n >= 1))) {
      throw new Error(`${name}: sizes must be a list of whole numbers such as [784, 30, 10]; ` +
        `found ${short(sizes)}`);
    }
    const problem = mnistProblem(sizes);
    if (problem) throw new Error(`${name}: sizes ${sizes.join("-")}: ${problem}`);
    return {
      sizes,
      weights: arrays(data.weights, "weights", sizes, name),
      biases: arrays(data.biases, "biases", sizes, name),
      activation: "sigmoid",
    };
  }

  /** ``value`` as the page's arrays of the shapes ``sizes`` give, row after row: weights
   * n_out rows of n_in, biases a column of n_out rows of one; else an Error naming key[l]. */
  function arrays(value, key, sizes, name) {
    const shapes = sizes.slice(1).map((n_out, l) => [n_out, key === "weights" ? sizes[l] : 1]);
    if (!Array.isArray(value) || value.length !== shapes.length) {
      const found = Array.isArray(value) ? value.length : `a JSON ${jsonKind(value)}`;
      throw new Error(`${name}: sizes ${sizes.join("-")} need ${shapes.length} ${key} ` +
        `arrays; found ${found}`);
    }
    return value.map((matrix, l) => {
      const [rows, cols] = shapes[l];
      const what = cols > 1 ? `${rows} rows of ${cols} numbers` : `a column of ${rows} rows of one`;
      const found = shapeOf(matrix);
      if (!Array.isArray(found) || found[0] !== rows || found[1] !== cols) {
        const transposed = Array.isArray(found) && found[0] === cols && found[1] === rows;
        const described = Array.isArray(found) ? `${found[0]} rows of ${found[1]}` : found;
        throw new Error(`${name}: ${key}[${l}] must be ${what} for sizes ${sizes.join("-")}; ` +
          `found ${described}${transposed ? " (transposed?)" : ""}`);
      }
      const out = Float64Array.from(matrix.flat());
      const bad = out.findIndex((v) => !Number.isFinite(v)); // JSON's 1e400 parses as Infinity
      if (bad >= 0) {
        const [r, c] = [Math.floor(bad / cols), bad % cols];
        throw new Error(`${name}: ${key}[${l}] holds an infinity at row ${r}, column ${c}: ` +
          "the network had diverged (a smaller η trains it)");
      }
      return out;
    });
  }

  /** [rows, columns] of an array of equally long arrays of numbers; else what it is instead. */
  function shapeOf(matrix) {
    if (!Array.isArray(matrix) || !matrix.length) return `${short(matrix)}, not a list of rows`;
    if (!matrix.every(Array.isArray)) return `a flat list of ${matrix.length}`;
    const cols = matrix[0].length;
    for (let r = 0; r < matrix.length; r++) {
      const row = matrix[r];
      if (row.length !== cols) {
        return `rows of unequal length (row 0 has ${cols} numbers, row ${r} has ${row.length})`;
      }
      const c = row.findIndex((v) => typeof v !== "number");
      if (c >= 0) return `${short(row[c])} at row ${r}, column ${c}, which is not a number`;
    }
    return [matrix.length, cols];
  }

  /** The page's network as network2.py's save() writes one, or { problem } when the format
   * cannot hold it. A switched-off hidden neuron is saved as the page computes it: its
   * outgoing weights 0, so that its activation reaches no neuron of the next layer. */
  function network2Of() {
    if (RELU) {
      return { problem: "a network with ReLU hidden layers cannot be saved in network2's " +
        "format, whose neurons are all σ" };
    }
    if (off[L - 1].some((v) => v)) {
      return { problem: "an output neuron is switched off, which network2's format cannot " +
        "say (its a would be σ(z)); switch it on to save" };
    }
    if (![...weights, ...biases].every((p) => p.every(Number.isFinite))) {
      return { problem: "the weights are no longer numbers (training diverged); Reset first" };
    }
    const rows = weights.map((w, l) => Array.from({ length: sizes[l + 1] },
      (_, j) => Array.from(w.subarray(j * sizes[l], (j + 1) * sizes[l]))));
    let zeroed = 0;
    for (let l = 0; l < L - 1; l++) { // off[l][j]: neuron j of the layer weights[l] feeds
      off[l].forEach((isOff, j) => {
        if (!isOff) return;
        zeroed++;
        for (const row of rows[l + 1]) row[j] = 0;
      });
    }
    const biasColumns = biases.map((b) => Array.from(b, (v) => [v]));
    return { json: { sizes, weights: rows, biases: biasColumns, cost: COST }, zeroed };
  }

  /** One line under the buttons: what Save or Open did, or why it did not. */
  function tell(message, bad = false) {
    $("file-status").textContent = message;
    $("file-status").classList.toggle("bad", bad);
  }

  /** Save this network: the page's network as a network2 JSON file, downloaded. */
  function save() {
    const { json, problem, zeroed } = network2Of();
    if (problem) return tell(`Not saved: ${problem}.`, true);
    const name = `network-${sizes.join("-")}.json`;
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([JSON.stringify(json)], { type: "application/json" }));
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
    tell(`Saved ${name}: ${sizes.join("-")}, every neuron σ, in network2.py's format` +
      (zeroed ? `; ${zeroed} switched-off neuron${zeroed > 1 ? "s" : ""} with outgoing ` +
        "weights 0, as the page computes it" : "") + ".");
  }

  /** Open the network2 JSON ``text`` of the file ``name``, drawn again for its layers; or say
   * in one line why not, and keep the page's network. Returns whether it opened. */
  function openNetwork(text, name) {
    let network;
    try {
      network = readNetwork2(text, name);
    } catch (e) {
      tell(e.message, true);
      return false;
    }
    if (training) stopTraining(`Training stopped: ${name} was opened.`);
    useNetwork(network);
    layout = layOut();
    forgetSelection();
    learnAfresh();
    $("key-relu").hidden = true;
    const title = `${name}, ${sizes.join("-")}`;
    $("title").textContent = title;
    document.title = `Watch it think, and learn: ${title}`;
    changed();
    tell(`Opened ${name}: ${sizes.join("-")}, every neuron σ; Reset brings it back as opened.`);
    return true;
  }

  async function openFile(file) {
    if (!file) return;
    try {
      openNetwork(await file.text(), file.name);
    } catch (e) {
      tell(`${file.name} cannot be read (${e.message}).`, true);
    }
  }

  $("save").onclick = save;
  $("open").onclick = () => $("open-file").click();
  $("open-file").addEventListener("change", (e) => {
    openFile(e.target.files[0]);
    e.target.value = ""; // the same file chosen again opens again
  });
  // A file dropped anywhere on the page opens; without this the browser would show it instead.
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    openFile(e.dataTransfer.files[0]);
  });

  Object.assign(window.mlp, {
    /** The JSON that Save writes now, or null when the format cannot hold the network. */
    network2: () => network2Of().json ?? null,
    openNetwork,
  });
