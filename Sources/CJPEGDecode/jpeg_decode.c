// A setjmp-guarded libjpeg decoder: libjpeg's error_exit must not return, and longjmp must not cross Swift frames.
#include "CJPEGDecode.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

struct guarded_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char *message;
    size_t message_size;
    int hit_eof;
};

static void guarded_error_exit(j_common_ptr cinfo) {
    struct guarded_error *err = (struct guarded_error *)cinfo->err;
    char buffer[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buffer);
    snprintf(err->message, err->message_size, "%s", buffer);
    longjmp(err->jump, 1);
}

// Warnings are silenced rather than printed to stderr; premature end of data, or entropy-coded data cut off by a
// marker (which libjpeg would pad with grey), is remembered so that a truncated file fails like it does in Pillow.
static void guarded_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void guarded_emit_message(j_common_ptr cinfo, int msg_level) {
    struct guarded_error *err = (struct guarded_error *)cinfo->err;
    if (msg_level < 0) {
        err->pub.num_warnings++;
        // The data ran out, or the entropy-coded data broke off at a marker: the rest would be libjpeg's padding.
        if (err->pub.msg_code == JWRN_JPEG_EOF || err->pub.msg_code == JWRN_HIT_MARKER || err->pub.msg_code == JWRN_MUST_RESYNC)
            err->hit_eof = 1;
    }
}

int unclip_jpeg_decode(const unsigned char *data, size_t size, size_t max_pixels,
                       unsigned char **pixels, int *width, int *height, int *components,
                       char *message, size_t message_size) {
    struct jpeg_decompress_struct cinfo;
    struct guarded_error err;
    // volatile: modified between setjmp and a possible longjmp.
    unsigned char *volatile out = NULL;

    *pixels = NULL;
    if (message_size > 0) message[0] = 0;
    if (size == 0 || size > (size_t)0xFFFFFFFFu) {
        snprintf(message, message_size, "JPEG data size %zu is out of range", size);
        return 1;
    }
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = guarded_error_exit;
    err.pub.output_message = guarded_output_message;
    err.pub.emit_message = guarded_emit_message;
    err.hit_eof = 0;
    err.message = message;
    err.message_size = message_size;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(out);
        return 1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        snprintf(message, message_size, "CMYK JPEG images are not supported; convert the image to RGB first");
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    // Check the size before jpeg_start_decompress: for progressive files it allocates whole-image buffers.
    if ((size_t)cinfo.image_width * (size_t)cinfo.image_height > max_pixels) {
        snprintf(message, message_size, "a JPEG of %ux%u pixels is more than the limit of %zu pixels",
                 (unsigned)cinfo.image_width, (unsigned)cinfo.image_height, max_pixels);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t w = cinfo.output_width, h = cinfo.output_height, c = (size_t)cinfo.output_components;
    if (w == 0 || h == 0 || w * h > max_pixels || (c != 1 && c != 3)) {
        snprintf(message, message_size, "JPEG of %zux%zu pixels with %zu components is not supported (limit %zu pixels)",
                 w, h, c, max_pixels);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    out = (unsigned char *)malloc(w * h * c);
    if (out == NULL) {
        snprintf(message, message_size, "out of memory for a %zux%zu JPEG", w, h);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    // Stop at the first sign of truncation: a file of a few bytes can declare 200 million pixels, and decoding them
    // from the grey padding libjpeg substitutes would take seconds (found by Scripts/fuzz.sh, FuzzImage).
    while (cinfo.output_scanline < cinfo.output_height && !err.hit_eof) {
        JSAMPROW row = out + (size_t)cinfo.output_scanline * w * c;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    if (err.hit_eof) {
        snprintf(message, message_size, "JPEG data is truncated or corrupt (its compressed data ends before the image does)");
        jpeg_destroy_decompress(&cinfo);
        free(out);
        return 1;
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    *pixels = out;
    *width = (int)w;
    *height = (int)h;
    *components = (int)c;
    return 0;
}

void unclip_jpeg_free(unsigned char *pixels) { free(pixels); }
