"""Object detection: box encodings, matching, SPP, RoIAlign, SSD's default boxes and loss, DETR's
set prediction loss; one file per paper, `boxes.py` the box arithmetic they share."""
