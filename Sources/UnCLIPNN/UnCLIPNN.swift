@_exported import UnCLIPTensor
