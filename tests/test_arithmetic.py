"""Vector arithmetic: the expression grammar, the vectors, the fig. 7 figure, `dcgan arithmetic`."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from dcgan_cli.core.errors import ExitCode
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.latent.arithmetic import evaluate
from dcgan_cli.latent.arithmetic_figures import (
    layout_figure,
    render_layout,
    result_grid_shape,
    tile_size,
)
from dcgan_cli.latent.concepts import Concept, add_concepts, read_bank
from dcgan_cli.latent.expressions import ExpressionError, parse_expression

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "digits-run"


# ---------------------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    "expression, terms",
    [
        ("smiling woman - neutral woman + neutral man", {"smiling woman": 1, "neutral woman": -1, "neutral man": 1}),
        ("Thick   Seven-seven+ONE", {"thick seven": 1, "seven": -1, "one": 1}),
        ("0.5 * smiling", {"smiling": 0.5}),
        ("smiling * 0.5 + smiling / 4", {"smiling": 0.75}),
        ("0.5 smiling", {"smiling": 0.5}),
        ("2 (a - b) + c", {"a": 2, "b": -2, "c": 1}),
        ("-(a - 3 * (b + c)) / 2", {"a": -0.5, "b": 1.5, "c": 1.5}),
        ("-a", {"a": -1}),
        ("a - -b", {"a": 1, "b": 1}),
        ("(1 + 1) * a", {"a": 2}),
        ("1e-1 a + .5 b", {"a": 0.1, "b": 0.5}),
        ("a - a + b", {"a": 0, "b": 1}),
        (
            "man with glasses - man without glasses + woman without glasses",
            {"man with glasses": 1, "man without glasses": -1, "woman without glasses": 1},
        ),
        ("5_o_clock_shadow + it's", {"5_o_clock_shadow": 1, "it's": 1}),
    ],
)
def test_expressions_parse_to_linear_combinations(expression, terms):
    parsed = parse_expression(expression).terms
    assert parsed.keys() == terms.keys()
    for name, coef in terms.items():
        assert math.isclose(parsed[name], coef, abs_tol=1e-12)


@pytest.mark.parametrize(
    "expression, needle, column",
    [
        ("thick seven - + one", None, None),  # fine: "+ one" is a unary plus
        ("thick seven - * one", "expected a concept name, a number or '(' after '-', found '*'", 15),
        ("thick seven -", "found the end of the expression", 14),
        ("(a + b", "expected ')' to close the '(' at column 1", 7),
        ("a + b)", "closing ')' without its '('", 6),
        ("a * b", "cannot multiply or divide two concepts", 3),
        ("a / b", "cannot multiply or divide two concepts", 3),
        ("2 / a", "cannot divide by a concept", 3),
        ("a / 0", "division by zero", 3),
        ("a + 1", "cannot add a number and a concept", 3),
        ("1 + 2", "plain number", 1),
        ("", "empty", 1),
        ("   ", "empty", 1),
        ("a (b)", "expected an operator", 3),
        ("a 2", "expected an operator (+ - * /) before the number 2", 3),
        ("smiling & woman", "unexpected character '&'", 9),
        ("1e400 a", "too large", 1),
        ("-" * 200 + "a", "nested too deeply", 65),
        ("(" * 100 + "a" + ")" * 100, "nested too deeply", 65),
    ],
)
def test_malformed_expressions_name_the_column(expression, needle, column):
    if needle is None:
        parse_expression(expression)
        return
    with pytest.raises(ExpressionError) as info:
        parse_expression(expression)
    assert needle in str(info.value)
    assert info.value.column == column
    assert f"column {column}" in str(info.value)
    assert "\u2038" in str(info.value)  # the caret marks the place
    assert "\n" not in str(info.value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_parser_raises_only_its_own_error_on_any_text(text):
    try:
        parse_expression(text)
    except ExpressionError as exc:
        assert 1 <= exc.column <= len(text) + 1
        assert "\n" not in str(exc)


TOKENS = [
    "a",
    "b c",
    "thick seven",
    "0",
    "1",
    "2.5",
    "1e308",
    "1e-320",
    ".",
    "e5",
    "+",
    "-",
    "*",
    "/",
    "(",
    ")",
    " ",
    "7_x",
    "'",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
@example(["a", "/", "1e-320"])  # overflow through scaling a concept, found by hypothesis in CI
@example(["a", "*", "1e308", "*", "1e308"])
def test_parser_raises_only_its_own_error_on_token_soup(tokens):
    text = "".join(tokens)
    try:
        combination = parse_expression(text)
    except ExpressionError as exc:
        assert 1 <= exc.column <= len(text) + 1
    else:
        assert combination.terms and all(math.isfinite(v) for v in combination.terms.values())


@pytest.mark.parametrize("text", ["a / 1e-320", "1e308 * a * 10", "a * 1e308 + a * 1e308"])
def test_overflowing_coefficients_are_refused_at_their_operator(text):
    with pytest.raises(ExpressionError, match="too large"):
        parse_expression(text)


NAMES = ("a", "b c", "thick seven")


@st.composite
def expressions(draw, depth=0):
    """(text, {name: coefficient}) of a random well-formed vector expression."""
    kind = draw(
        st.sampled_from(["name", "name"] if depth > 3 else ["name", "add", "sub", "scale", "divide", "negate", "paren"])
    )
    if kind == "name":
        name = draw(st.sampled_from(NAMES))
        return name, {name: 1.0}
    if kind in ("add", "sub"):
        (lt, lc), (rt, rc) = draw(expressions(depth + 1)), draw(expressions(depth + 1))
        sign = 1.0 if kind == "add" else -1.0
        # The right side in parentheses, so "a - (b + c)" keeps its meaning.
        terms = dict(lc)
        for k, v in rc.items():
            terms[k] = terms.get(k, 0.0) + sign * v
        return f"{lt} {'+' if kind == 'add' else '-'} ({rt})", terms
    inner_text, inner = draw(expressions(depth + 1))
    if kind == "scale":
        k = draw(st.sampled_from([0.5, 2.0, 3.0, 0.25]))
        return f"{k:g} * ({inner_text})", {n: k * v for n, v in inner.items()}
    if kind == "divide":
        k = draw(st.sampled_from([2.0, 4.0, 0.5]))
        return f"({inner_text}) / {k:g}", {n: v / k for n, v in inner.items()}
    if kind == "negate":
        return f"-({inner_text})", {n: -v for n, v in inner.items()}
    return f"({inner_text})", inner


@settings(max_examples=300, deadline=None)
@given(expressions())
def test_well_formed_expressions_give_the_right_coefficients(case):
    text, expected = case
    parsed = parse_expression(text).terms
    assert set(parsed) == set(expected)
    for name, coef in expected.items():
        assert math.isclose(parsed[name], coef, rel_tol=1e-9, abs_tol=1e-12)


# ---------------------------------------------------------------------------- vectors


def small_bank(nz=100, k=10):
    g = torch.Generator().manual_seed(0)
    return {name: torch.randn(k, nz, generator=g) for name in ("thick seven", "seven", "one")}


def test_evaluate_combines_the_means_of_the_first_exemplars():
    bank = small_bank()
    r = evaluate("thick seven - seven + 0.5 * one", bank, exemplars=3, rescale=False, noise=0.25, variants=8, seed=1)
    expected = bank["thick seven"][:3].mean(0) - bank["seven"][:3].mean(0) + 0.5 * bank["one"][:3].mean(0)
    assert torch.allclose(r.raw, expected, atol=1e-6) and torch.equal(r.result, r.raw)
    assert r.variants.shape == (8, 100)
    noise = r.variants - r.result
    assert noise.abs().max() <= 0.25 and noise.abs().max() > 0.2  # uniform on [-0.25, 0.25]
    again = evaluate("thick seven - seven + 0.5 * one", bank, exemplars=3, rescale=False, seed=1)
    assert torch.equal(again.variants, r.variants)  # the seed fixes the noise
    assert not torch.equal(
        evaluate("one", bank, seed=2, rescale=False).variants, evaluate("one", bank, seed=1, rescale=False).variants
    )


def test_rescaling_moves_the_result_onto_the_prior_shell():
    bank = small_bank()
    r = evaluate("thick seven - seven + one", bank, exemplars=10)  # normal prior: on by default
    assert r.rescaled and math.isclose(float(r.result.norm()), 10.0, rel_tol=1e-5)
    assert float(r.raw.norm()) < 7  # a sum of three means of 10 draws: about sqrt(3 * 100 / 10)
    assert torch.allclose(r.result / r.result.norm(), r.raw / r.raw.norm(), atol=1e-6)
    assert all(math.isclose(float(m.norm()), 10.0, rel_tol=1e-5) for m in r.means.values())
    uniform = evaluate("one", {"one": torch.rand(3, 30) * 2 - 1}, prior="uniform")
    assert not uniform.rescaled  # off by default for a uniform prior


def test_evaluate_rejects_unknown_and_cancelling_concepts():
    bank = small_bank()
    with pytest.raises(ExpressionError) as info:
        evaluate("thick seven - sevn + one", bank)
    assert "unknown concept 'sevn'; did you mean 'seven'?" in str(info.value)
    assert "known concepts: one, seven, thick seven" in str(info.value)
    assert info.value.column == 15
    with pytest.raises(ExpressionError, match="cancel out"):
        evaluate("one - one", bank)


# ---------------------------------------------------------------------------- the figure


def test_result_grid_is_the_paper_3x3_with_the_result_in_the_middle():
    assert result_grid_shape(8) == (3, 3, 4)
    assert result_grid_shape(0) == (1, 1, 0)
    assert result_grid_shape(3) == (2, 2, 0)


def test_figure_layout_and_rendering():
    terms = {"thick seven": 1.0, "seven": -1.0, "one": 0.5}
    counts = {"thick seven": 3, "seven": 3, "one": 10}
    layout = layout_figure(terms, counts, variants=8, image_size=32, title="thick seven - seven + 0.5 one")
    t = tile_size(32)
    assert t == 64 and layout.tile == 64
    assert len(layout.tiles) == 16 + 3 + 9
    for name, k in counts.items():
        exemplars = layout.find("exemplar", name)
        assert [tile.index for tile in exemplars] == list(range(k))
        (mean,) = layout.find("mean", name)
        assert mean.box[1] > max(tile.box[3] for tile in exemplars)  # the mean sits below its exemplars
    ten = layout.find("exemplar", "one")
    assert len({tile.box[1] for tile in ten}) == 2  # 10 exemplars: two rows of five
    (result,) = layout.find("result")
    variants = layout.find("variant")
    assert len(variants) == 8
    xs = sorted({tile.box[0] for tile in variants + [result]})
    ys = sorted({tile.box[1] for tile in variants + [result]})
    assert result.box[:2] == (xs[1], ys[1])  # the centre of the 3x3
    # The blocks go left to right in the order of the expression, the result last.
    lefts = [min(tile.box[0] for tile in layout.tiles if tile.concept == n) for n in terms] + [xs[0]]
    assert lefts == sorted(lefts)
    boxes = [tile.box for tile in layout.tiles]
    for i, a in enumerate(boxes):
        assert a[2] - a[0] == t and a[3] - a[1] == t
        assert a[0] >= 0 and a[2] <= layout.width and a[1] >= 0 and a[3] <= layout.height
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)  # no overlap

    # Each tile shows its own image, enlarged without smoothing.
    images, shade = {}, {}
    for n, tile in enumerate(layout.tiles):
        value = -1 + 2 * (n + 1) / (len(layout.tiles) + 1)
        images[(tile.role, tile.concept, tile.index)] = torch.full((1, 32, 32), value)
        shade[tile.box] = round((value + 1) * 127.5)
    picture = render_layout(layout, images)
    assert picture.size == (layout.width, layout.height)
    pixels = np.asarray(picture)
    for box, value in shade.items():
        assert (pixels[box[1] : box[3], box[0] : box[2]] == value).all()
    assert (pixels[:8, :8] == 255).all()  # white margins


# ---------------------------------------------------------------------------- `dcgan arithmetic`


@pytest.fixture
def banked_run(tmp_path, monkeypatch) -> Path:
    """The committed digits run with three concepts named after seed-0 samples."""
    monkeypatch.chdir(tmp_path)
    run = Path("runs") / "digits-run"
    shutil.copytree(FIXTURE_RUN, run)
    z = seeded_z(0, 12, 100, "normal")
    add_concepts(
        run / "concepts.json",
        [Concept("thick seven", z[0:3], {"kind": "test"}), Concept("seven", z[3:6]), Concept("one", z[6:12])],
        nz=100,
    )
    return run


def test_arithmetic_command_writes_the_figure_and_its_json(cli, banked_run):
    result = cli(["arithmetic", "thick seven - seven + one", "--seed", "4"])
    assert result.exit_code == 0, result.output
    png, meta = banked_run / "figures" / "arithmetic-001.png", banked_run / "figures" / "arithmetic-001.json"
    record = json.loads(meta.read_text())
    assert record["terms"] == {"thick seven": 1.0, "seven": -1.0, "one": 1.0}
    assert record["exemplars"] == 3 and record["rescaled"] is True and record["noise"] == 0.25
    assert len(record["variants"]) == 8 and len(record["result"]) == 100
    assert math.isclose(float(torch.tensor(record["result"]).norm()), 10.0, rel_tol=1e-5)
    bank = read_bank(banked_run / "concepts.json")
    raw = bank["thick seven"].z[:3].mean(0) - bank["seven"].z[:3].mean(0) + bank["one"].z[:3].mean(0)
    assert math.isclose(record["raw_norm"], float(raw.norm()), rel_tol=1e-5)
    title = next(text for _, text, _ in layout_figure({"a": 1}, {"a": 1}, 0, 32, "x").texts[:1])
    assert title == "x"
    layout = layout_figure(
        record["terms"],
        {"thick seven": 3, "seven": 3, "one": 3},
        8,
        32,
        "thick seven - seven + one   (mean of 3 exemplars, rescaled to norm 10.0; noise U(\u00b10.25))",
    )
    with Image.open(png) as picture:
        assert picture.size == (layout.width, layout.height)
        # The middle of the result block is the generator's image of the result vector.
        from dcgan_cli.engines.torch_engine import TorchEngine

        with TorchEngine(banked_run, device="cpu") as engine:
            expected = engine.generate(torch.tensor(record["result"])[None])[0, 0]
        (tile,) = layout.find("result")
        drawn = np.asarray(picture.convert("L"))[tile.box[1] : tile.box[3] : 2, tile.box[0] : tile.box[2] : 2]
        assert np.abs(drawn / 255.0 - (expected.numpy() + 1) / 2).max() <= 1 / 255 + 1e-6

    # Paper setting, JSON on stdout, and no overwriting.
    result = cli(
        [
            "arithmetic",
            "0.5 * (thick seven - seven) + one",
            "--exemplars",
            "10",
            "--no-rescale",
            "--variants",
            "3",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["rescaled"] is False and len(printed["variants"]) == 3
    assert printed["concepts"]["one"]["exemplars"] == 6  # it has only 6; a note says so
    assert "fewer than 10 exemplars" in result.stderr
    assert (banked_run / "figures" / "arithmetic-002.png").is_file()
    assert cli(["arithmetic", "one", "--out", "fig.png"]).exit_code == 0
    again = cli(["arithmetic", "one", "--out", "fig.png"])
    assert again.exit_code == ExitCode.BAD_INPUT and "--force" in again.stderr


def test_arithmetic_sweep(cli, banked_run):
    result = cli(["arithmetic", "thick seven - seven", "--sweep", "-2:2:5", "--rows", "3", "--out", "turn.png"])
    assert result.exit_code == 0, result.output
    record = json.loads(Path("turn.json").read_text())
    assert record["sweep"]["count"] == 5 and record["sweep"]["rows"] == 3
    width, height = Image.open("turn.png").size
    assert width >= 5 * 64 + 4 * 4 and height >= 3 * 64 + 2 * 4


@pytest.mark.parametrize(
    "args, needle",
    [
        (["thick sevn - seven + one"], "unknown concept 'thick sevn'; did you mean 'thick seven'?"),
        (["thick seven - * one"], "column 15"),
        (["thick seven", "--sweep", "1:2"], "START:STOP:COUNT"),
        (["thick seven", "--variants", "-1"], "--variants"),
        (["one", "--out", "fig.jpg"], "name a .png file"),
    ],
)
def test_arithmetic_bad_input(cli, banked_run, args, needle):
    result = cli(["arithmetic", *args])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert needle in result.stderr and "Traceback" not in result.output


def test_arithmetic_on_an_empty_bank_says_how_to_fill_it(cli, banked_run):
    (banked_run / "concepts.json").unlink()
    result = cli(["arithmetic", "a + b"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "is empty; fill it with `dcgan concepts auto`" in result.stderr and "dcgan concepts add" in result.stderr


# ---------------------------------------------------------------------------- the paper's claim, on digits


@pytest.mark.parametrize(
    "setting", [["--exemplars", "3", "--no-rescale"], ["--exemplars", "10"]], ids=["paper", "rescaled-10"]
)
def test_thick_seven_minus_seven_plus_one_draws_thick_ones(cli, tmp_path, monkeypatch, setting, auto_bank):
    """On the committed digits model: `concepts auto`, then the expression draws ones whose
    strokes are thicker than the image of the mean of the "one" exemplars."""
    from dcgan_cli.engines.torch_engine import TorchEngine
    from dcgan_cli.latent.labelers.strokes import fitted_classifier, stroke_thickness

    monkeypatch.chdir(tmp_path)
    shutil.copytree(auto_bank, "runs/digits-run")
    result = cli(["arithmetic", "thick seven - seven + one", *setting, "--variants", "32", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    vectors = torch.tensor([record["result"], *record["variants"]])
    bank = read_bank(Path("runs/digits-run/concepts.json"))
    k = record["exemplars"]
    with TorchEngine("runs/digits-run", device="cpu") as engine:
        images = engine.generate(vectors)
        one_mean = engine.generate(torch.tensor(record["concepts"]["one"]["mean"])[None])
        one_exemplars = engine.generate(bank["one"].z[:k])
    ones = float((fitted_classifier(32).predict_proba(images).argmax(axis=1) == 1).mean())
    thickness = float(stroke_thickness(images).mean())
    assert ones > 0.5, ones
    assert thickness > float(stroke_thickness(one_mean)[0]), (thickness, float(stroke_thickness(one_mean)[0]))
    # For the record (printed with -s): against the exemplars themselves.
    print(
        f"{setting}: {ones:.0%} ones, thickness {thickness:.2f} px; 'one' mean image "
        f"{float(stroke_thickness(one_mean)[0]):.2f} px, 'one' exemplars {float(stroke_thickness(one_exemplars).mean()):.2f} px"
    )


@pytest.fixture(scope="module")
def auto_bank(tmp_path_factory) -> Path:
    """The committed digits run after `dcgan concepts auto` (with the defaults)."""
    from typer.testing import CliRunner

    from dcgan_cli.cli import build_app

    run = tmp_path_factory.mktemp("auto") / "digits-run"
    shutil.copytree(FIXTURE_RUN, run)
    result = CliRunner().invoke(build_app(), ["concepts", "auto", "-r", str(run)])
    assert result.exit_code == 0, result.output
    bank = read_bank(run / "concepts.json")
    assert {"thick seven", "seven", "one"} <= set(bank) and all(
        len(bank[n].z) == 10 for n in ("thick seven", "seven", "one")
    )
    assert bank["thick seven"].source["labeler"] == "digits"
    thick = bank["thick seven"].source["thickness_px"]
    plain = bank["seven"].source["thickness_px"]
    assert np.mean(thick) > np.mean(plain)  # the labeler measured what it claims
    return run
