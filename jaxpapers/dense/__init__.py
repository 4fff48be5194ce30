"""Dense prediction (semantic segmentation): U-Net, FCN, SegNet, FC-DenseNet, FPN, one file each.

Every segmenter maps NHWC images to {'out': logits [N, H, W, num_classes]} at the input's
resolution (FCN with an auxiliary head adds 'aux'), so one experiment (`experiments/segment.py`)
trains them all.
"""
