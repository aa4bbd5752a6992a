"""Loading CSV/numpy files, their error messages, the time split and normalisation."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from trainer.data import (
    DataError,
    ReadOptions,
    check_lengths,
    denormalise,
    fit_normalisation,
    load_paths,
    normal_windows,
    normalise,
    read_csv,
    split_series,
)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def test_semicolon_bom_timestamp_and_labels(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.csv",
        "\ufeffdatetime;p;t;anomaly;changepoint\n"
        "2020-03-09 10:14:33;1.5;20;0.0;0\n2020-03-09 10:14:34;2.5;21;1.0;1\n2020-03-09 10:14:35;3;22;0;0\n",
    )
    (s,) = load_paths([f], exclude=["changepoint"])
    assert s.channels == ["p", "t"]
    np.testing.assert_allclose(s.values, [[1.5, 20], [2.5, 21], [3, 22]])
    assert s.labels.tolist() == [0, 1, 0]
    assert s.sample_period_s == pytest.approx(1.0)


def test_tab_delimiter_and_channel_selection(tmp_path: Path) -> None:
    f = write(tmp_path / "a.tsv", "timestamp\ta\tb\tc\n0\t1\t2\t3\n1\t4\t5\t6\n")
    (s,) = load_paths([f], channels=["c", "a"])
    assert s.channels == ["c", "a"]
    np.testing.assert_allclose(s.values, [[3, 1], [6, 4]])


def test_unnamed_date_column_is_not_a_feature(tmp_path: Path) -> None:
    f = write(tmp_path / "a.csv", "when,x\n2024-01-01T00:00:00,1\n2024-01-01T00:00:10,2\n")
    (s,) = load_paths([f])
    assert s.channels == ["x"] and s.sample_period_s == pytest.approx(10.0)


def test_text_in_numeric_column_names_file_line_column(tmp_path: Path) -> None:
    f = write(tmp_path / "bad.csv", "a,b\n1,2\n3,oops\n")
    with pytest.raises(DataError, match=r"bad\.csv: line 3, column 'b': not a number: 'oops'") as err:
        load_paths([f])
    assert "\n" not in str(err.value)


def test_missing_value_refused_without_fill(tmp_path: Path) -> None:
    f = write(tmp_path / "m.csv", "a,b\n1,2\n,3\n4,5\n")
    with pytest.raises(DataError, match=r"m\.csv: line 3, column 'a': missing value \(use --fill"):
        load_paths([f])


@pytest.mark.parametrize(("fill", "expected"), [("ffill", 1.0), ("interpolate", 2.5), ("zero", 0.0)])
def test_missing_value_filled(tmp_path: Path, fill: str, expected: float, caplog) -> None:
    f = write(tmp_path / "m.csv", "a,b\n1,2\n,3\n4,5\n")
    (s,) = load_paths([f], fill=fill)
    assert s.values[1, 0] == pytest.approx(expected)
    # what was made up is said, per channel (the trial: 30 % of a channel filled without a word)
    assert f"m.csv: --fill {fill} filled missing cells of a 1 (33%) of 3 rows" in caplog.text and "b " not in caplog.text


def test_leading_gap_ffill_uses_first_value(tmp_path: Path) -> None:
    f = write(tmp_path / "m.csv", "a\nnan\n\n7\n8\n")
    (s,) = load_paths([f], fill="ffill")
    assert s.values[:, 0].tolist() == [7, 7, 8]


def test_channel_mismatch_between_files(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "x,y\n1,2\n")
    b = write(tmp_path / "b.csv", "x,z\n1,2\n")
    with pytest.raises(DataError, match=r"b\.csv: channels \[x, z\] differ from .*a\.csv \[x, y\]"):
        load_paths([a, b])


def test_ragged_row_and_unknown_columns(tmp_path: Path) -> None:
    f = write(tmp_path / "r.csv", "a,b\n1,2\n3\n")
    with pytest.raises(DataError, match=r"line 3: 1 field, the header has 2 \(a comment or footer line\? delete it\)$"):
        load_paths([f])
    mixed = write(tmp_path / "m.csv", "a;b;c\n1;2;3\n4,5,6\n")  # one line written with another separator
    with pytest.raises(DataError, match="line 3: 1 field, the header has 3: this line is separated by ',' where "
                                        "the header uses ';'"):
        load_paths([mixed])
    tabs = write(tmp_path / "t.csv", "a,b\n1,2\n3\t4\n")
    with pytest.raises(DataError, match="separated by tabs where the header uses ','"):
        load_paths([tabs])
    commas = write(tmp_path / "c.csv", "a;b;c\n1,5;2,5;3,5\n1,5\t2,5\t3,5\n")  # decimal commas, then tabs
    with pytest.raises(DataError, match="separated by tabs where the header uses ';'"):
        load_paths([commas], opts=ReadOptions(decimal=","))
    g = write(tmp_path / "g.csv", "a,b\n1,2\n")
    with pytest.raises(DataError, match="column 'c' not found"):
        load_paths([g], channels=["c"])


def test_too_few_rows_for_one_window(tmp_path: Path) -> None:
    f = write(tmp_path / "short.csv", "a\n" + "1\n" * 10)
    series = load_paths([f])
    with pytest.raises(DataError, match=r"short\.csv: 10 rows, fewer than one window of 32"):
        check_lengths(series, 32)


def test_folder_npy_and_npz(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones((20, 2), np.float32))
    np.savez(
        tmp_path / "b.npz",
        values=np.zeros((30, 2)),
        labels=np.r_[np.zeros(29), 1],
        channels=np.array(["ch0", "ch1"]),
    )
    a, b = load_paths([tmp_path])
    assert a.values.shape == (20, 2) and a.labels is None
    assert b.values.shape == (30, 2) and b.labels.sum() == 1


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        load_paths([tmp_path / "nope.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no data files"):
        load_paths([tmp_path / "empty"])


def _series(tmp_path: Path, n: int, name: str, labels: bool = False):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    lab = {"labels": (np.arange(n) == n // 2).astype(np.int8)} if labels else {}
    np.savez(tmp_path / name, values=x, **lab)
    return load_paths([tmp_path / name])[0]


def test_time_split_is_the_tail_of_each_file(tmp_path: Path) -> None:
    s1, s2 = _series(tmp_path, 100, "a.npz"), _series(tmp_path, 50, "b.npz")
    train, val = split_series([s1, s2], 0.2, "time")
    assert [len(t.values) for t in train] == [80, 40] and [len(v.values) for v in val] == [20, 10]
    np.testing.assert_array_equal(val[0].values, s1.values[80:])
    assert train[0].values.max() < val[0].values.min()  # validation is strictly later in time


def test_file_split_keeps_whole_files(tmp_path: Path) -> None:
    files = [_series(tmp_path, 40, f"{i}.npz") for i in range(5)]
    train, val = split_series(files, 0.4, "file")
    assert len(train) == 3 and len(val) == 2 and val[-1] is files[-1]
    with pytest.raises(DataError, match="at least two files"):
        split_series(files[:1], 0.2, "file")


def test_labelled_windows_are_dropped_from_training(tmp_path: Path) -> None:
    s = _series(tmp_path, 40, "l.npz", labels=True)
    w = normal_windows([s], 8, 4)
    # windows containing row 20 (starts 16 and 20, also 12? 12..19 no) are dropped
    assert len(w) == 9 - 2


def test_normalisation_round_trip_and_constant_channel() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal([5.0, -3.0, 7.0], [2.0, 0.5, 0.0], size=(1000, 3)).astype(np.float32)
    mean, std = fit_normalisation([x[:500], x[500:]])
    z = normalise(x, mean, std)
    np.testing.assert_allclose(z[:, :2].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z[:, :2].std(axis=0), 1, atol=1e-4)
    assert std[2] == 1.0
    np.testing.assert_allclose(denormalise(z, mean, std), x, rtol=1e-5, atol=1e-4)


def test_absent_label_column_given_explicitly_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path / "a.csv", "x,y,anomaly\n1,2,0\n3,4,1\n")
    with pytest.raises(DataError, match=r"--label-column 'lable': no such column in .*a\.csv; columns: x, y, anomaly"):
        load_paths([f], label_column="lable")


def test_absent_default_label_column_is_fine(tmp_path: Path) -> None:
    (s,) = load_paths([write(tmp_path / "a.csv", "x,y\n1,2\n3,4\n")])
    assert s.channels == ["x", "y"] and s.labels is None


def test_label_column_present_in_one_file_of_several_is_fine(tmp_path: Path) -> None:
    a = write(tmp_path / "free.csv", "x,y\n1,2\n3,4\n")
    b = write(tmp_path / "lab.csv", "x,y,fault\n1,2,0\n3,4,1\n")
    sa, sb = load_paths([a, b], label_column="fault")
    assert sa.labels is None and sb.labels.tolist() == [0, 1]
    assert sa.channels == sb.channels == ["x", "y"]


def test_exclude_absent_from_some_files_is_fine(tmp_path: Path) -> None:
    """SKAB: anomaly-free.csv has no changepoint column, valve1/13.csv has one; train on both."""
    free = write(tmp_path / "anomaly-free.csv", "datetime;p;t\n2020-01-01 00:00:00;1;2\n2020-01-01 00:00:01;3;4\n")
    valve = write(tmp_path / "13.csv", "datetime;p;t;anomaly;changepoint\n"
                  "2020-01-01 00:00:00;1;2;0;0\n2020-01-01 00:00:01;3;4;1;1\n")
    a, b = load_paths([free, valve], exclude=["changepoint"])
    assert a.channels == b.channels == ["p", "t"]


def test_exclude_absent_from_every_file_is_an_error(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "x,y\n1,2\n")
    b = write(tmp_path / "b.csv", "x,y\n1,2\n")
    with pytest.raises(DataError, match=r"--exclude names unknown column\(s\) nope \(in none of 2 files\)"):
        load_paths([a, b], exclude=["nope"])


@pytest.mark.parametrize("col", ["changepoint", "label", "Labels"])
def test_label_like_columns_are_never_features_by_default(tmp_path: Path, col: str) -> None:
    f = write(tmp_path / "a.csv", f"x,{col},y,anomaly\n1,0,2,0\n3,1,4,1\n")
    (s,) = load_paths([f])
    assert s.channels == ["x", "y"] and s.labels.tolist() == [0, 1]
    (s,) = load_paths([f], channels=["y", col])  # still usable when asked for by name
    assert s.channels == ["y", col]


def test_a_units_row_under_the_header_gives_the_units_and_the_data_starts_below(tmp_path: Path) -> None:
    f = tmp_path / "units.csv"
    f.write_text("timestamp,pressure,temp,flow,anomaly\n,[bar],degC,,\n"
                 "2026-01-01T00:00:00Z,3.1,60.5,1.0,0\n2026-01-01T00:00:01Z,3.2,60.7,1.1,1\n")
    s = read_csv(f)
    assert s.channels == ["pressure", "temp", "flow"] and s.values.shape == (2, 3)
    assert s.units == {"pressure": "bar", "temp": "degC"} and s.labels.tolist() == [0, 1]
    assert s.sample_period_s == 1.0
    g = tmp_path / "plain.csv"
    g.write_text("pressure,temp\n3.1,60.5\n3.2,60.7\n")
    assert read_csv(g).units == {}


@pytest.mark.parametrize("unit0", ["", "-", "dd.mm.yyyy hh:mm:ss", "%d.%m.%Y %H:%M:%S"])
def test_the_time_columns_cell_of_a_units_row_may_hold_its_format(tmp_path: Path, unit0: str) -> None:
    """SCADA and Excel exports write the time column's format where the other columns have units."""
    f = tmp_path / "de.csv"
    f.write_text(f"zeit;druck;temp\n{unit0};bar;°C\n01.12.2026 10:00:00;4,702;59,6\n01.12.2026 10:00:01;4,711;59,7\n",
                 encoding="utf-8")
    s = read_csv(f, opts=ReadOptions(decimal=",", time_format="%d.%m.%Y %H:%M:%S"))
    assert s.channels == ["druck", "temp"] and s.units == {"druck": "bar", "temp": "°C"}
    assert s.time_column == "zeit" and s.sample_period_s == 1.0


def test_a_units_row_names_channels_as_they_are_asked_for(tmp_path: Path) -> None:
    f = tmp_path / "u.csv"
    f.write_text("Pressure;Temp\nbar;°C\n3,1;60,5\n3,2;60,7\n", encoding="utf-8")
    s = read_csv(f, channels=["temp", "pressure"], opts=ReadOptions(decimal=","))
    assert s.units == {"temp": "°C", "pressure": "bar"} and s.values[0].tolist() == pytest.approx([60.5, 3.1])


@pytest.mark.parametrize(("text", "msg"), [
    ("p,t\nbar,60.5\n3.1,60.7\n", "line 2, column 'p': not a number: 'bar'"),  # numbers beside: data
    ("p,t\nbar,the temperature in the tank\n3.1,60.7\n", "line 2: a units row ('p': 'bar'), but column 't'"),
    ("p,t\nbar,degC\n", "no data rows after the header and its units row"),
    ("p,t\nbar,degC\n3.1,oops\n", "line 3, column 't': not a number: 'oops'"),
])
def test_a_messy_second_row_is_a_clear_error(tmp_path: Path, text: str, msg: str) -> None:
    f = tmp_path / "m.csv"
    f.write_text(text)
    with pytest.raises(DataError, match=re.escape(msg)):
        read_csv(f)


def test_files_whose_units_rows_disagree_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("p,t\nbar,degC\n3.1,60.5\n")
    (tmp_path / "b.csv").write_text("p,t\npsi,degC\n45,60.5\n")
    with pytest.raises(DataError, match="the units row gives 'p' in 'psi'"):
        load_paths([tmp_path])
