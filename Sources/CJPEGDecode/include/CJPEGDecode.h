#ifndef CJPEGDECODE_H
#define CJPEGDECODE_H

#include <stddef.h>

/// The project's libjpeg shim. Decodes a JPEG held in memory to 8-bit interleaved pixels, without ever exiting or longjmp-ing past the caller.
///
/// libjpeg reports fatal errors through error_exit, which must not return; the only safe way to recover is a
/// setjmp/longjmp pair whose frames are all C. This function holds that pair, so Swift callers just see a status.
///
/// On success returns 0 and sets *pixels (free with unclip_jpeg_free), *width, *height and *components
/// (1 for grayscale, 3 for RGB). On failure returns nonzero and writes a NUL-terminated reason into message.
/// Images with more than max_pixels pixels, and CMYK/YCCK images, are rejected before any pixel memory is allocated.
int unclip_jpeg_decode(const unsigned char *data, size_t size, size_t max_pixels,
                       unsigned char **pixels, int *width, int *height, int *components,
                       char *message, size_t message_size);

/// Frees pixels returned by unclip_jpeg_decode, and data returned by unclip_jpeg_encode.
void unclip_jpeg_free(unsigned char *pixels);

/// Encodes 8-bit interleaved RGB pixels as a baseline JPEG at `quality` (1 … 100, libjpeg's scale) in memory.
///
/// On success returns 0 and sets *data (free with unclip_jpeg_free) and *size. On failure returns nonzero and writes a
/// NUL-terminated reason into message.
int unclip_jpeg_encode(const unsigned char *rgb, int width, int height, int quality,
                       unsigned char **data, size_t *size, char *message, size_t message_size);

#endif
