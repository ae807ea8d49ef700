"""What the trainer check scripts (run by path in their own venvs, this folder on sys.path) share."""


def pad_runs(token_ids, pad_id):
    """Lengths of the contiguous runs of pad_id in token_ids."""
    runs, prev = [], None
    for t in token_ids:
        if t == pad_id:
            if prev == pad_id:
                runs[-1] += 1
            else:
                runs.append(1)
        prev = t
    return runs
