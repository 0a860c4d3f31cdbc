"""--val-holdout's stratified split and the results.json summary."""
import numpy as np

from timm_synermix.trainer.outputs import summarize_results, write_summary
from timm_synermix.trainer.data import TransformSubset, holdout_split


class _Labelled(list):
    transform = None

    @property
    def targets(self):
        return [y for _, y in self]


def test_holdout_split_is_stratified_seeded_and_disjoint():
    data = _Labelled((i, i % 3) for i in range(30))
    train, val = holdout_split(data, data, fraction=0.2, seed=0)
    assert isinstance(train, TransformSubset) and isinstance(val, TransformSubset)
    assert np.bincount([y for _, y in val]).tolist() == [2, 2, 2]
    assert not set(train.indices) & set(val.indices) and len(train) + len(val) == 30
    assert holdout_split(data, data, 0.2, seed=0)[1].indices == val.indices
    assert holdout_split(data, data, 0.2, seed=1)[1].indices != val.indices
    val.transform = 'eval-tf'  # timm's loader assigns the transform on the subset
    assert data.transform == 'eval-tf'


def test_summarize_results_last_k():
    history = [dict(epoch=e, eval_top1=t) for e, t in enumerate([10., 30., 30., 20., 40.])]
    r = summarize_results(history, 'synermix', last_k=2)
    assert r['best_top1'] == 40. and r['best_epoch'] == 4
    assert r['last_k'] == 2 and r['last_k_mean_top1'] == 30. and r['last_k_std_top1'] == 10.
    r = summarize_results(history[:4], 'x', last_k=10)
    assert r['best_epoch'] == 1 and r['last_k'] == 4  # ties keep the earlier epoch
    assert summarize_results([dict(epoch=0, eval_top1=None)], 'x', 3)['best_top1'] is None


def test_write_summary(tmp_path):
    path = tmp_path / 'summary.csv'
    write_summary(str(path), [dict(epoch=0, train_loss=1.5, lr=0.1, other=3)])
    assert path.read_text().splitlines() == [
        'epoch,train_loss,train_loss_intra,train_loss_inter,eval_loss,eval_top1,eval_top5,lr', '0,1.5,,,,,,0.1']
