"""The `jueju` command line: one sub-command per stage, all sharing --config and --set.

A user error (bad argument, missing file, bad config value) ends with a one-line
message on stderr and exit status 2, never a traceback. Quiet by default: our own progress
bars and summaries only; --verbose adds the frameworks' log lines. `--help` imports no deep
learning framework: each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from jueju import options
from jueju.config import ConfigError, load_config
from jueju.measure.readings import DRAWS

FRAMEWORK_COMMANDS = (
    "train",
    "evaluate",
    "bench",
    "study-context",
    "generate",
    "serve",
)  # they import Keras (and `readings pool`, when it runs)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    verbose = args.verbose or args.sub_verbose
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("jueju").setLevel(logging.INFO)  # our own one-line summaries stay
    logging.getLogger("gensim").setLevel(logging.INFO if verbose else logging.WARNING)  # it logs every file
    if verbose:  # importing jueju quietened TensorFlow's native log (jueju/__init__.py): here it is asked for
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    try:
        if args.command in FRAMEWORK_COMMANDS and not verbose:
            import_framework_quietly()
        # --config / --set may stand before or after the command
        config = load_config(args.sub_config or args.config, args.set + args.sub_set)
        return args.run(config, args) or 0
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"jueju {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jueju {args.command}: interrupted", file=sys.stderr)
        return 130


class Parser(argparse.ArgumentParser):
    """argparse, with a bad argument said in one line (and where to read more), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="jueju", description="Write classical Chinese quatrains (绝句).")
    _config_options(parser, "")
    common = Parser(add_help=False)
    _config_options(common, "sub_")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = lambda name, **kw: commands.add_parser(name, parents=[common], **kw)  # noqa: E731

    crawl = add("crawl", help="download the chinese-poetry corpus")
    crawl.set_defaults(run=_crawl)

    prepare = add("prepare", help="clean the corpus and cut the data set (crawls if needed)")
    prepare.add_argument("--force", action="store_true", help="redo every stage even if up to date")
    prepare.set_defaults(run=_prepare)

    w2v = add("word2vec", help="train character vectors, or show a character's neighbours")
    w2v.add_argument("--similar", metavar="CHAR", help="print the nearest characters to CHAR")
    w2v.add_argument("--topn", type=int, default=10, help="how many neighbours (default 10)")
    w2v.set_defaults(run=_word2vec)

    train = add("train", help="train the model (runs any missing earlier stage)")
    start = train.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    start.add_argument("--finetune", metavar="PATH", help="start from this .keras model")
    train.add_argument(
        "--out",
        metavar="DIR",
        help="the folder to train into (default: models/<form>, refused when it holds a trained model)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace the trained model in the folder")
    train.set_defaults(run=_train)

    evaluate = add("evaluate", help="perplexity vs a trigram baseline and generation metrics on the test split")
    evaluate.add_argument("--model", metavar="DIR", help="a trained model folder (default: models/<form>)")
    evaluate.add_argument("--limit", type=int, help="use only the first N test poems")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--out", metavar="FILE", help="JSON results (default: evaluation.json beside the model)")
    evaluate.set_defaults(run=_evaluate)

    bench = add("bench", help="speed benchmark: prepare, training, generation, word2vec vs the original's method")
    from jueju.measure.bench import add_arguments as bench_arguments

    bench_arguments(bench)  # --quick, --corpus, --out
    bench.set_defaults(run=_bench)

    study = add(
        "study-context",
        help="train each context length (window 6, 12, whole poem, sequence) for the "
        "same time and compare validation perplexity and speed",
    )
    study.add_argument("--seconds", type=float, default=360.0, help="training time per variant (default 360)")
    study.add_argument("--only", action="append", metavar="NAME", help="run only this variant (repeatable)")
    study.add_argument("--out", metavar="FILE", help="JSON results (default: <log_dir>/context_study.json)")
    study.set_defaults(run=_study)

    generate = add("generate", help="write poems from first lines, an acrostic, a template, keywords or a title")
    generate.add_argument(
        "first_lines", nargs="*", metavar="FIRST_LINE", help="5 or 7 Han characters; - alone reads them from stdin"
    )
    generate.add_argument(
        "--input",
        metavar="FILE",
        help="first lines from FILE (- for stdin), one a line, blank lines skipped; a bad line is reported on "
        "stderr with its number, the others are still written, and the exit status is then 1",
    )
    generate.add_argument("--acrostic", metavar="CHARS", help="4 characters to open the 4 lines (藏头诗)")
    generate.add_argument(
        "--template",
        metavar="POEM",
        help="4 lines with blanks (＿ _ □) to write, the rest kept: 床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。",
    )
    generate.add_argument(
        "--keywords", metavar="WORDS", help="1-4 keywords of 1-2 characters, each within one line: 秋,月,故乡"
    )
    generate.add_argument(
        "--title",
        metavar="TITLE",
        help="1-12 characters the whole poem is written toward (alone or with the others): 送友人",
    )
    generate.add_argument(
        "--form", type=int, choices=(5, 7), default=5, help="line length for --acrostic, --keywords or --title alone"
    )
    options.add_flags(generate, options.NAMES)  # --num, --sampler, --temperature, ... from the options schema
    generate.add_argument("--model", metavar="DIR", help="a trained model folder (default: models/<form>)")
    generate.set_defaults(run=_generate)

    serve = add("serve", help="serve the web page and the JSON API (POST /api/poems) with uvicorn")
    serve.add_argument("--host", help="address to listen on (default: serve.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default: serve.port, 8000)")
    serve.add_argument(
        "--model",
        action="append",
        metavar="DIR",
        help="a trained model folder, one per form (repeatable; default: models/<form> of "
        "corpus.line_length, and the other form's when trained)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the port, each with its own copy of the models (default 1)",
    )
    serve.set_defaults(run=_serve)

    reading = add("readings", help="blind readings at scale: candidate pools, readers' prompts, their answers")
    steps = reading.add_subparsers(dest="step", required=True, metavar="STEP")
    pool = steps.add_parser("pool", help="write candidates for the inputs of a data split (needs jueju prepare)")
    pool.add_argument("out", metavar="POOL.tsv")
    pool.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    pool.add_argument(
        "--draws", type=int, default=DRAWS["draw"][0], help="single draws per input (rerank 1), beside one default"
    )
    pool.add_argument("--inputs", type=int, help="how many inputs (first lines and titles; default all)")
    pool.add_argument("--seed", type=int, default=1)
    mixes = steps.add_parser("mix", help="cut a pool into readers' mixes: DIR/<name>-NNN/{prompt.txt,key.tsv}")
    mixes.add_argument("pool", metavar="POOL.tsv")
    mixes.add_argument("--out", metavar="DIR", required=True)
    mixes.add_argument("--name", default="mix")
    mixes.add_argument("--layout", default="grouped", choices=("shuffled", "grouped"))
    mixes.add_argument("--inputs-per-mix", type=int, default=28)
    mixes.add_argument("--seed", type=int, default=1)
    answers = steps.add_parser("read", help="add readers' answers to a ratings file, refusing bad lines")
    answers.add_argument("ratings", metavar="RATINGS.tsv")
    answers.add_argument("answers", nargs="+", metavar="MIX_DIR:ANSWER.txt", help="each mix folder and its answer")
    reading.set_defaults(run=_readings)

    plot = add("plot", help="draw logs/training.png: loss and validation perplexity per epoch")
    plot.add_argument("--log-dir", metavar="DIR", help="folder of metrics.csv or model.log (default: paths.log_dir)")
    plot.add_argument("--out", metavar="FILE", help="the picture (default: training.png in the log folder)")
    plot.set_defaults(run=_plot)
    return parser


def import_framework_quietly() -> None:
    """Import Keras and its backend with the process's native stderr shut.

    TensorFlow's C++ start-up lines (oneDNN, CPU features, absl) are written to file
    descriptor 2 before any log level applies, so only closing it silences them. An
    import that fails still raises here, after stderr is back, so its error is seen.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # what TensorFlow logs later, through its own levels
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        import keras  # noqa: F401  (loads the backend: where the lines are printed)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _config_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument(
        "--verbose",
        dest=f"{prefix}verbose",
        action="store_true",
        help="also show the frameworks' log lines (TensorFlow, Keras, gensim)",
    )
    parser.add_argument(
        "--config", dest=f"{prefix}config", metavar="FILE", help="an .ini file of keys to change (see config/cfg.ini)"
    )
    parser.add_argument(
        "--set",
        dest=f"{prefix}set",
        metavar="SECTION.KEY=VALUE",
        action="append",
        default=[],
        help="change one config key, e.g. --set train.epochs=5 (repeatable)",
    )


def _crawl(config, args):
    from jueju.data.pipeline import crawl_stage

    summary = crawl_stage(config)
    print(summary)
    return 1 if summary.failed else 0


def _prepare(config, args):
    from jueju.data.pipeline import prepare

    prepare(config, force=args.force)
    print((config.data_dir / "dataset.json").read_text("utf-8"))


def _word2vec(config, args):
    from jueju.data.pipeline import corpus_stage, dataset_stage, word2vec_stage
    from jueju.data.word2vec import load_vectors, most_similar

    corpus_stage(config)
    dataset_stage(config)
    path = word2vec_stage(config)
    if args.similar:
        for char, score in most_similar(load_vectors(path), args.similar, args.topn):
            print(f"{char}\t{score:.3f}")
    else:
        print(f"character vectors in {path}")


def _train(config, args):
    from jueju.rank.scores import BACKWARD
    from jueju.train.loop import train
    from jueju.write.preprocess import EXAMPLE_FIRST_LINES

    if args.out:
        config = config.writing_to(args.out)
    state = train(config, resume=args.resume, finetune=args.finetune, overwrite=args.overwrite)
    if config.model.direction == "backward":
        use = f"it reranks for the forward model whose folder it sits beside as {BACKWARD.format('<name>')}"
    else:
        example = EXAMPLE_FIRST_LINES[config.corpus.line_length]
        use = f"write with it: jueju generate --model {config.model_dir} {example}"
    print(
        f"trained {state.epoch} epochs; best val_loss {state.best_val_loss:.4f} at epoch {state.best_epoch}; "
        f"model in {config.model_dir} ({use})"
    )


def _evaluate(config, args):
    from pathlib import Path

    from jueju.measure.evaluate import format_table, run_evaluation, write_results

    model_dir = Path(args.model) if args.model else config.model_dir
    results = run_evaluation(model_dir, config.data_dir, limit=args.limit, seed=args.seed)
    out = Path(args.out) if args.out else model_dir / "evaluation.json"
    write_results(results, out)
    print(format_table(results))
    print(f"results in {out}")


def _bench(config, args):
    from jueju.measure.bench import run_from_args

    return run_from_args(config, args)


def _study(config, args):
    from pathlib import Path

    from jueju.data.pipeline import prepare
    from jueju.measure.evaluate import write_results
    from jueju.measure.study import choose_variants, format_study, run_study

    if not args.seconds > 0:
        raise ValueError(f"--seconds must be a positive number, got {args.seconds}")
    choose_variants(config, args.only)
    prepare(config)
    results = run_study(config, args.seconds, args.only)
    out = Path(args.out) if args.out else config.log_dir / "context_study.json"
    write_results(results, out)
    print(format_study(results))
    print(f"results in {out}")


def _generate(config, args):
    from jueju.config import FORMS
    from jueju.write.poet import get_poet, normalise_first_line
    from jueju.write.preprocess import template_form

    if args.input and args.first_lines:
        raise ValueError("give first lines on the command line or --input FILE, not both")
    if "-" in args.first_lines and len(args.first_lines) > 1:
        raise ValueError("- reads the first lines from stdin: give it alone, without other first lines")
    source = args.input or ("-" if args.first_lines == ["-"] else None)
    inputs = sum(map(bool, (args.first_lines or source, args.acrostic, args.template)))
    if inputs > 1 or not (inputs or args.keywords or args.title):
        raise ValueError(
            "give first lines (or --input FILE), --acrostic CHARS, --template POEM, --keywords WORDS or --title "
            "TITLE (one of the first three; --keywords may follow first lines, --title any of them)"
        )
    # what the command line leaves out comes from the user's config, not the model's
    settings = {
        name: getattr(config.generate, name) if getattr(args, name) is None else getattr(args, name)
        for name in options.NAMES
    }
    options.check(settings)  # a bad option fails once, before any input line
    num = settings.pop("num")
    extra = {name: getattr(args, name) for name in ("keywords", "title") if getattr(args, name)}

    def write(given: dict, length: int) -> None:
        model_dir = args.model or config.path(config.paths.model_dir) / FORMS[length]
        poet = get_poet(model_dir)  # each folder loaded once, however many lines
        print("\n".join(poet.poems(num=num, **given, **extra, **settings)), flush=True)

    def write_from(line: str) -> None:
        line = normalise_first_line(line)
        write({"first_line": line}, len(line))

    if source:
        return _generate_lines(source, write_from)
    if args.first_lines:
        requests = [({"first_line": line}, len(normalise_first_line(line))) for line in args.first_lines]
    elif args.template:
        requests = [({"template": args.template}, template_form(args.template))]
    elif args.acrostic:
        requests = [({"acrostic": args.acrostic}, args.form)]
    else:
        requests = [({}, args.form)]
    for given, length in requests:
        write(given, length)


def _generate_lines(source: str, write) -> int:
    """`write` each line of `source` (a file, or - for stdin), blank lines skipped. A line it refuses
    (ValueError) is reported on stderr with its number, and the others are still written.
    Exit status 0 when every line was written, 1 when any was refused."""
    import contextlib

    refused = 0
    with open(source, "rb") if source != "-" else contextlib.nullcontext(sys.stdin.buffer) as lines:
        for number, raw in enumerate(lines, 1):
            try:
                line = _decoded(raw).strip()
                if line:
                    write(line)
            except ValueError as err:
                refused += 1
                name = "stdin" if source == "-" else source
                print(f"jueju generate: {name}, line {number}: {err}", file=sys.stderr, flush=True)
    return 1 if refused else 0


def _decoded(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark, which some editors write first, is no character
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 text (byte {raw[err.start]:#04x} at {err.start})") from None


def _serve(config, args):
    from jueju.serve.app import run

    if args.port is not None and not 1 <= args.port <= 65_535:
        raise ValueError(f"--port must be from 1 to 65535, got {args.port}")
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    run(config, args.model, host=args.host, port=args.port, workers=args.workers)


def _readings(config, args):
    import random

    from jueju.measure import readings

    if args.step == "pool":  # the one step that writes poems: Keras is imported here, not for mix or read
        if not (args.verbose or args.sub_verbose):
            import_framework_quietly()
        from jueju.write.poet import get_poet

        inputs = readings.split_inputs(config.data_dir, args.split)
        random.Random(args.seed).shuffle(inputs)
        variants = {**readings.DRAWS, "draw": (args.draws, {"rerank": 1})}
        model_dir = config.path(config.paths.model_dir) / config.form  # where `jueju generate` reads it
        candidates = readings.pool(get_poet(model_dir), inputs[: args.inputs], variants, args.seed)
        readings.write_pool(args.out, candidates)
        print(f"{len(candidates)} poems for {len(inputs[: args.inputs])} inputs in {args.out}")
    elif args.step == "mix":
        candidates = readings.read_pool(args.pool)
        folders = readings.mix(candidates, args.out, args.layout, args.inputs_per_mix, args.seed, args.name)
        print(f"{len(folders)} mixes in {args.out}: give each prompt.txt, and nothing else, to a fresh reader")
    else:
        bad = 0
        for pair in args.answers:
            folder, _, answer = pair.partition(":")
            if not answer:
                raise ValueError(f"give each answer as MIX_DIR:ANSWER.txt, got {pair!r}")
            result = readings.read_answer(folder, answer, args.ratings)
            for error in result["refused"]:
                print(f"jueju readings: {answer}, {error}", file=sys.stderr)
            bad += len(result["refused"]) + len(result["missing"])
            print(
                f"{answer}: {result['added']} judgements added, {len(result['refused'])} lines refused, "
                f"{len(result['missing'])} poems unanswered"
            )
        return 1 if bad else 0


def _plot(config, args):
    from pathlib import Path

    from jueju.train.plot import plot_training

    log_dir = Path(args.log_dir) if args.log_dir else config.log_dir
    print(f"training curves in {plot_training(log_dir, args.out)}")
