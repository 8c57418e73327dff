#include <criterion/criterion.h>
Test(cache, placeholder) {}
