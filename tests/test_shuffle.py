import pyarrow as pa

from vlprep.engine.post import BUCKET_BYTES, shuffled


def tables(n, chunk):
    return (pa.table({"i": list(range(s, min(n, s + chunk)))}) for s in range(0, n, chunk))


def collect(it):
    return [v for t in it for v in t.column("i").to_pylist()]


def test_shuffle_is_a_seeded_permutation_across_many_buckets(tmp_path):
    a = collect(shuffled(tables(1000, 37), 7, tmp_path / "w", expected_bytes=10 * BUCKET_BYTES))
    b = collect(shuffled(tables(1000, 37), 7, tmp_path / "w", expected_bytes=10 * BUCKET_BYTES))
    c = collect(shuffled(tables(1000, 37), 8, tmp_path / "w", expected_bytes=10 * BUCKET_BYTES))
    assert sorted(a) == list(range(1000))
    assert a == b and a != c and a != list(range(1000))
    assert not (tmp_path / "w").exists()  # bucket files are removed


def test_shuffle_with_one_bucket(tmp_path):
    out = collect(shuffled(tables(50, 50), 1, tmp_path / "w", expected_bytes=1))
    assert sorted(out) == list(range(50)) and out != list(range(50))
