/* Just enough of the .npy format (versions 1-3, C order, little-endian) to read frames and write outputs. */
#ifndef XSTREAM_HARNESS_NPY_H_
#define XSTREAM_HARNESS_NPY_H_

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace xstream_host {

struct NpyArray {
  std::string descr;           // numpy dtype string, e.g. "<f4", "|i1", "<i2"
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;   // C order
};

// The numpy descr for a TFLM dtype name used by the harness ("int8", "float32", ...); "" if unknown.
inline std::string NpyDescr(const std::string& dtype) {
  if (dtype == "int8") return "|i1";
  if (dtype == "uint8") return "|u1";
  if (dtype == "bool") return "|b1";
  if (dtype == "int16") return "<i2";
  if (dtype == "int32") return "<i4";
  if (dtype == "int64") return "<i8";
  if (dtype == "float32") return "<f4";
  if (dtype == "float64") return "<f8";
  return "";
}

// '<i1' and '|i1' mean the same; compare the kind and size only.
inline bool SameDescr(const std::string& a, const std::string& b) {
  auto core = [](const std::string& d) { return d.size() > 1 && (d[0] == '<' || d[0] == '|' || d[0] == '=') ? d.substr(1) : d; };
  return core(a) == core(b);
}

inline bool ReadNpy(const std::string& path, NpyArray* out, std::string* error) {
  FILE* f = fopen(path.c_str(), "rb");
  if (f == nullptr) {
    *error = "cannot open " + path;
    return false;
  }
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  size_t got;
  while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) bytes.insert(bytes.end(), chunk, chunk + got);
  fclose(f);
  if (bytes.size() < 10 || memcmp(bytes.data(), "\x93NUMPY", 6) != 0) {
    *error = path + " is not a .npy file";
    return false;
  }
  const int major = bytes[6];
  size_t header_len, offset;
  if (major == 1) {
    header_len = bytes[8] | (bytes[9] << 8);
    offset = 10;
  } else {
    if (bytes.size() < 12) {
      *error = path + ": truncated header";
      return false;
    }
    header_len = bytes[8] | (bytes[9] << 8) | (bytes[10] << 16) | (static_cast<size_t>(bytes[11]) << 24);
    offset = 12;
  }
  if (offset + header_len > bytes.size()) {
    *error = path + ": truncated header";
    return false;
  }
  const std::string header(reinterpret_cast<const char*>(bytes.data() + offset), header_len);
  auto value_of = [&](const std::string& key) -> std::string {
    size_t k = header.find("'" + key + "'");
    if (k == std::string::npos) return "";
    k = header.find(':', k);
    if (k == std::string::npos) return "";
    ++k;
    while (k < header.size() && header[k] == ' ') ++k;
    return header.substr(k);
  };
  std::string descr = value_of("descr");
  if (descr.empty() || descr[0] != '\'') {
    *error = path + ": no descr in header";
    return false;
  }
  out->descr = descr.substr(1, descr.find('\'', 1) - 1);
  if (value_of("fortran_order").rfind("True", 0) == 0) {
    *error = path + ": Fortran-order arrays are not supported";
    return false;
  }
  const std::string shape = value_of("shape");
  if (shape.empty() || shape[0] != '(') {
    *error = path + ": no shape in header";
    return false;
  }
  out->shape.clear();
  const size_t close = shape.find(')');
  std::string dims = shape.substr(1, close - 1);
  size_t pos = 0;
  while (pos < dims.size()) {
    while (pos < dims.size() && (dims[pos] == ' ' || dims[pos] == ',')) ++pos;
    if (pos >= dims.size()) break;
    size_t end = pos;
    while (end < dims.size() && dims[end] >= '0' && dims[end] <= '9') ++end;
    if (end == pos) break;
    out->shape.push_back(std::stoll(dims.substr(pos, end - pos)));
    pos = end;
  }
  out->data.assign(bytes.begin() + offset + header_len, bytes.end());
  return true;
}

inline bool WriteNpy(const std::string& path, const std::string& descr, const std::vector<int64_t>& shape,
                     const uint8_t* data, size_t size) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) header += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) header += ",";
  header += "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  FILE* f = fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const uint8_t preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<uint8_t>(header.size() & 0xff),
                                static_cast<uint8_t>(header.size() >> 8)};
  bool ok = fwrite(preamble, 1, 10, f) == 10 && fwrite(header.data(), 1, header.size(), f) == header.size() &&
            fwrite(data, 1, size, f) == size;
  return fclose(f) == 0 && ok;
}

}  // namespace xstream_host

#endif  // XSTREAM_HARNESS_NPY_H_
