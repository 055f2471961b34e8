// A setjmp-guarded libjpeg encoder to memory (the super-resolution trainers' JPEG artefacts), same guard as decoding.
#include "CJPEGDecode.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

struct encode_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char *message;
    size_t message_size;
};

static void encode_error_exit(j_common_ptr cinfo) {
    struct encode_error *err = (struct encode_error *)cinfo->err;
    char buffer[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buffer);
    snprintf(err->message, err->message_size, "%s", buffer);
    longjmp(err->jump, 1);
}

static void encode_output_message(j_common_ptr cinfo) { (void)cinfo; }

int unclip_jpeg_encode(const unsigned char *rgb, int width, int height, int quality,
                       unsigned char **data, size_t *size, char *message, size_t message_size) {
    struct jpeg_compress_struct cinfo;
    struct encode_error err;
    // jpeg_mem_dest mallocs and grows `out`; the caller frees it. Its address is taken, so it lives in memory and
    // holds libjpeg's latest pointer after a longjmp.
    unsigned char *out = NULL;
    unsigned long length = 0;

    *data = NULL;
    *size = 0;
    if (message_size > 0) message[0] = 0;
    if (width <= 0 || height <= 0 || width > 65500 || height > 65500 || quality < 1 || quality > 100) {
        snprintf(message, message_size, "cannot encode a %dx%d JPEG at quality %d", width, height, quality);
        return 1;
    }
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = encode_error_exit;
    err.pub.output_message = encode_output_message;
    err.message = message;
    err.message_size = message_size;
    if (setjmp(err.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(out);
        return 1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &out, &length);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)cinfo.next_scanline * (size_t)width * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *data = out;
    *size = (size_t)length;
    return 0;
}
